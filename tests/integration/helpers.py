"""What integration tests share: building the conformance traffic and waiting for results."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiokafka.partitioner import murmur2
from prometheus_client.parser import text_string_to_metric_families

from journey.impact import DIMENSIONS
from stream.kafka.topics import TopicNames
from tests.fixtures.broker import WorkerProcess
from tests.fixtures.conformance import impact_mismatches, state_mismatches


def partition_of(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def conformance_traffic(
    events: list[dict[str, Any]], raw_lines: list[bytes], names: TopicNames, partitions: int
) -> tuple[list[tuple[str, bytes | None, bytes]], list[tuple[str, int, bytes, bytes]], int]:
    """Every event on its topic; some with no key, some with a wrong key, some on a wrong partition.

    Returns (keyed messages, messages for an explicit partition, how many were mis-keyed).
    """
    keyed: list[tuple[str, bytes | None, bytes]] = []
    misplaced: list[tuple[str, int, bytes, bytes]] = []
    wrong = 0
    for index, (event, raw) in enumerate(zip(events, raw_lines, strict=True)):
        topic = names.for_type(event["type"])
        key = event["customer_id"].encode()
        if index % 13 == 3:
            keyed.append((topic, None, raw))
            wrong += 1
        elif index % 13 == 7:
            keyed.append((topic, b"not-" + key, raw))
            wrong += 1
        elif index % 13 == 11:
            right = partition_of(key, partitions)
            misplaced.append((topic, (right + 1) % partitions, key, raw))
            wrong += 1
        else:
            keyed.append((topic, key, raw))
    return keyed, misplaced, wrong


async def publish_conformance(env: Any, conformance: Any, *, split: int | None = None) -> list[Any]:
    """Send every conformance event, some mis-keyed or on a wrong partition.

    With `split`, only the first `split` keyed messages go now; the rest are returned (as
    (topic, key, value) triples) for the caller to send later.
    """
    events = getattr(conformance, "events", None) or [json.loads(line) for line in conformance.raw_lines]
    keyed, misplaced, _ = conformance_traffic(events, conformance.raw_lines, env.names, env.partitions)
    now, later = (keyed, []) if split is None else (keyed[:split], keyed[split:])
    await env.produce(now)
    for topic, partition, key, raw in misplaced:
        await env.produce_to_partition(topic, partition, key, raw)
    return later


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def metric_sum(
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        value
        for (sample, sample_labels), value in values.items()
        if sample == name and all((k, v) in sample_labels for k, v in labels.items())
    )


async def wait_for_states(
    worker: WorkerProcess,
    expected: dict[str, dict[str, Any]],
    deadline_s: float = 90,
    headers: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Poll the HTTP lookup until every customer equals its expected state; fail with the diff."""
    deadline = time.monotonic() + deadline_s
    pending = dict(expected)
    actual: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    while True:
        problems = []
        for customer_id, want in list(pending.items()):
            status, body = await asyncio.to_thread(worker.get, f"/customers/{customer_id}", headers)
            if status != 200:
                problems.append(f"{customer_id}: HTTP {status}")
                continue
            diff = state_mismatches(want, body)
            if diff:
                problems.extend(diff)
            else:
                actual[customer_id] = body
                del pending[customer_id]
        if not pending:
            return actual
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(pending)} customers never matched: {problems[:5]}\n{worker.log_tail()}"
            )
        await asyncio.sleep(0.5)


def latest_by_key(records: list[Any]) -> dict[str, dict[str, Any]]:
    """The latest update of each key; a tombstone (an id that stopped being canonical, or an
    erasure) removes the key until a later update."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        key = record.key.decode()
        if record.value is None:
            latest.pop(key, None)
            continue
        value = json.loads(record.value)
        if key not in latest or value["version"] >= latest[key]["version"]:
            latest[key] = value
    return latest


def updates_show(expected: dict[str, dict[str, Any]]) -> Callable[[list[Any]], bool]:
    """Whether `ppp-updates` records end, for every customer of `expected`, in its scores:
    what `read_until` waits for before a test compares them exactly."""

    def done(records: list[Any]) -> bool:
        latest = latest_by_key(records)
        return all(
            customer_id in latest
            and all(
                round(latest[customer_id][name], 2) == round(state[name], 2)
                for name in ("csat", "cltv", "ppp")
            )
            for customer_id, state in expected.items()
        )

    return done


def versions_by_key(records: list[Any]) -> dict[str, list[int]]:
    """The versions of each key since its last tombstone, in topic order."""
    versions: dict[str, list[int]] = defaultdict(list)
    for record in records:
        if record.value is None:
            versions[record.key.decode()] = []
            continue
        versions[record.key.decode()].append(json.loads(record.value)["version"])
    return versions


async def read_until(
    env: Any, topic: str, done: Callable[[list[Any]], bool], deadline_s: float = 30
) -> list[Any]:
    """Every record of `topic`, read again until `done` says they are complete (or the
    deadline passed). A worker's tables answer over HTTP before the batch's outputs are
    acknowledged, and with transactions before they commit: a test that has seen every
    state still waits for the topics to show them, then asserts on what it read."""
    deadline = time.monotonic() + deadline_s
    while True:
        records = await env.read_topic(topic)
        if done(records) or time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.5)


async def read_links(env: Any, expected: int, deadline_s: float = 60) -> list[Any]:
    """The referral-links records once `expected` have arrived (or the deadline passed).

    Links are made one hop after the customer states (through share-joins), so a test that
    has seen every state still has to wait for them; it then compares them exactly, so one
    too many fails as surely as one too few.
    """
    return await read_until(
        env, env.names.referral_links, lambda records: len(records) >= expected, deadline_s
    )


def impact_answers(worker: WorkerProcess) -> tuple[list[dict[str, Any]], list[str]]:
    """Every entry as one worker's HTTP interface gives it: `/impact` for `all`, and each
    dimension's ranking (top 1000) for the rest; and what in those answers disagrees (a
    ranking's count against the summary's, which differ while the impact still changes
    between the requests)."""
    status, summary = worker.get("/impact")
    if status != 200:
        return [], [f"/impact: HTTP {status}"]
    entries = [{k: v for k, v in summary.items() if k != "dimensions"}] if summary["customers"] else []
    problems = []
    for dimension in DIMENSIONS[1:]:
        status, ranking = worker.get(f"/impact/{dimension}?top=1000")
        assert status == 200, ranking
        if ranking["entries"] != summary["dimensions"][dimension]:
            problems.append(
                f"/impact/{dimension}: {ranking['entries']} entries, /impact says {summary['dimensions']}"
            )
        entries += ranking["top"]
    return entries, problems


def published_sums(records: list[Any]) -> list[dict[str, Any]]:
    """The latest message of every key of the `impact` topic (tombstones drop the key), and
    a check that each key's versions only grow in the order a consumer reads them."""
    latest: dict[bytes, dict[str, Any]] = {}
    versions: dict[bytes, int] = {}
    for record in records:
        if record.value is None:
            latest.pop(record.key, None)
            continue
        entry = json.loads(record.value)
        assert entry["version"] > versions.get(record.key, 0), (record.key, entry["version"])
        versions[record.key] = entry["version"]
        assert record.key.decode() == f"{entry['dimension']}/{entry['key']}"
        latest[record.key] = entry
    return list(latest.values())


async def wait_for_impact(
    env: Any, workers: list[WorkerProcess], expected: list[dict[str, Any]], deadline_s: float = 90
) -> None:
    """Poll until every worker's HTTP answers and the `impact` topic equal `expected`."""
    deadline = time.monotonic() + deadline_s
    sums_only = [{k: v for k, v in e.items() if k in _PUBLISHED} for e in expected]
    while True:
        problems = []
        for worker in workers:
            entries, disagree = impact_answers(worker)
            problems += [f"{worker.url}: {p}" for p in [*disagree, *impact_mismatches(expected, entries)]]
        if not problems:
            published = published_sums(await env.read_topic(env.names.impact))
            problems = [f"impact topic: {p}" for p in impact_mismatches(sums_only, published)]
        if not problems:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"impact never matched: {problems[:5]}\n{workers[0].log_tail()}")
        await asyncio.sleep(0.5)


# The fields of an `impact` message (the comparisons are computed when read).
_PUBLISHED = {
    "dimension", "key", "customers", "buyers", "surveyed", "referred", "moments",
    "ppp", "cltv", "csat_sum", "attributed_ppp", "attributed_cltv",
}  # fmt: skip


async def wait_for_platinum(
    worker: WorkerProcess, expected: dict[str, dict[str, Any]], deadline_s: float = 60
) -> list[dict[str, Any]]:
    """Poll `GET /customers?top=10` until it names replay's top 10 by PPP (then id), with
    their PPP: every partition's top, merged, whoever owns the partitions now."""
    want = sorted(expected.values(), key=lambda s: (-Decimal(str(s["ppp"])), s["customer_id"]))[:10]
    wanted = [(s["customer_id"], s["ppp"]) for s in want]
    deadline = time.monotonic() + deadline_s
    while True:
        status, body = await asyncio.to_thread(worker.get, "/customers?top=10")
        got = [(s["customer_id"], s["ppp"]) for s in body["top"]] if status == 200 else None
        if got == wanted:
            return list(body["top"])
        if time.monotonic() > deadline:
            raise AssertionError(f"platinum never matched: want {wanted}, got {got}\n{worker.log_tail()}")
        await asyncio.sleep(0.5)
