"""The history stage of `make bench`: what one more event costs a worker for customers with
10, 100 and 1,000 prior events (issue #33: cost must not grow with loyalty).

For each history length and each of three profiles, a deployment of its own: `CUSTOMERS` (200)
customers whose prior events (touchpoints with sentiment, purchases and surveys) are streamed
through one worker first; then `ROUNDS` rounds of one new event per customer, each round
waited for before the next, so that a customer is in one batch per round. The profiles:
*full*, an event every 17 hours (the longer histories span two years, so their CSAT and
365-day windows are full and entries leave them at every event), *quiet*, an event every
nine days (a handful in each window), and *cold*: *full* with a worker that keeps no
customer decoded between batches (`JOURNEY_CACHED_CUSTOMERS=0`), so that each event reads
its customer back from the tables, as a worker owning more customers than its cache holds
does for a customer whose last event was long ago. Measured over the rounds only: the worker's CPU per
event (less what it spends idle), events/s, and the bytes the worker wrote per event to its
state changelogs (customers and history) and to every topic but the inputs (keys and values,
as read back). And, in this process, the memory a worker holds per customer at each history
length: its records (head and segments) and its decoded state, as the worker's cache keeps it.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from journey.customer import CustomerState
from journey.journal import Layout
from journey.scoring import ScoringRules, apply_event
from journey.stored import to_store
from schemas.decode import parse_event, scored
from stream.kafka.admin import create_topics
from stream.kafka.topics import TopicNames

__all__ = ["HistoryCost", "history_stage", "memory_by_history"]

CUSTOMERS = 200
ROUNDS = 20
IDLE_SECONDS = 3.0
# The time between a customer's events, by profile.
PROFILES = {"full": timedelta(hours=17), "quiet": timedelta(days=9), "cold": timedelta(hours=17)}
# The settings of each profile's worker, beyond the bench's.
_SETTINGS = {"cold": {"JOURNEY_CACHED_CUSTOMERS": "0"}}
_START = datetime(2000, 1, 1, tzinfo=UTC)


class HistoryCost:
    """What one more event cost, for customers of `prior` prior events."""

    def __init__(
        self, profile: str, prior: int, events: int, seconds: float, cpu: float, changelog: int, written: int
    ) -> None:
        self.profile = profile
        self.prior = prior
        self.events = events
        self.rate = events / seconds
        self.cpu_us = cpu / events * 1e6
        self.changelog_bytes = changelog / events
        self.written_bytes = written / events

    def line(self) -> str:
        return (
            f"  {self.profile:>5} {self.prior:>5} prior events: {self.rate:,.0f} events/s, worker CPU "
            f"{self.cpu_us:.1f} us/event, state changelogs {self.changelog_bytes:,.0f} B/event, "
            f"all outputs {self.written_bytes:,.0f} B/event"
        )


def _event(customer: str, index: int, step: timedelta = PROFILES["full"]) -> dict[str, Any]:
    """The `index`th event of a customer: a touchpoint with sentiment, a purchase or a survey."""
    at = (_START + step * index).isoformat().replace("+00:00", "Z")
    base = {"event_id": f"{customer}-{index}", "customer_id": customer, "occurred_at": at}
    match index % 3:
        case 0:
            moment = ("zmot", "fmot", "smot")[min(index, 2)]
            return {"type": "touchpoint", **base, "moment": moment, "channel": "app", "sentiment": 0.25}
        case 1:
            return {
                "type": "purchase",
                **base,
                "order_id": f"o-{index}",
                "amount": "12.50",
                "currency": "USD",
            }
        case _:
            return {"type": "survey", **base, "score": 1 + index % 10, "scale": "1-10"}


def _messages(names: TopicNames, events: Sequence[dict[str, Any]]) -> list[tuple[str, bytes, bytes]]:
    return [(names.for_type(e["type"]), e["customer_id"].encode(), json.dumps(e).encode()) for e in events]


async def _ends(kafka: dict[str, Any], topics: Sequence[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        if not tps:
            await consumer._client.force_metadata_update()  # noqa: SLF001  # no public refresh
            tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def _bytes_between(
    kafka: dict[str, Any], start: dict[TopicPartition, int], end: dict[TopicPartition, int]
) -> dict[str, int]:
    """Bytes of keys and values written to each topic between two sets of end offsets."""
    sizes: dict[str, int] = {}
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        wanted = {tp: (start.get(tp, 0), end[tp]) for tp in end if end[tp] > start.get(tp, 0)}
        if not wanted:
            return sizes
        consumer.assign(list(wanted))
        for tp, (first, _) in wanted.items():
            consumer.seek(tp, first)
        left = set(wanted)
        while left:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < wanted[tp][1]:
                        sizes[tp.topic] = (
                            sizes.get(tp.topic, 0) + len(record.key or b"") + len(record.value or b"")
                        )
            for tp in list(left):
                if await consumer.position(tp) >= wanted[tp][1]:
                    left.discard(tp)
        return sizes
    finally:
        await consumer.stop()


async def _wait_for(count: Callable[[], float], target: float, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while count() < target:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: the history stage's worker handled {count():.0f} of {target} events")
        # Each sample is an HTTP request the worker answers: every 50 ms, as the throughput
        # stage samples, so that sampling is a small part of the CPU measured.
        await asyncio.sleep(0.05)


async def history_stage(
    kafka: dict[str, Any],
    priors: Sequence[int],
    *,
    produce: Callable[[dict[str, Any], list[tuple[str, bytes, bytes]]], Any],
    start_worker: Callable[[str, int, Mapping[str, str]], Any],
    events_handled: Callable[[int], float],
    cpu_seconds: Callable[[int], float],
    free_port: Callable[[], int],
    partitions: int,
    tmp: Path,
) -> list[HistoryCost]:
    """One `HistoryCost` per profile and history length in `priors`; the callables are the
    bench's own (its producer, worker and metric readers), so that every stage measures the
    same way."""
    tools = _Tools(produce, start_worker, events_handled, cpu_seconds, free_port, partitions)
    costs = []
    for profile, step in PROFILES.items():
        for prior in priors:
            cost = await _one(kafka, tools, profile, step, prior)
            print(cost.line(), flush=True)
            costs.append(cost)
    return costs


@dataclass(frozen=True)
class _Tools:
    produce: Callable[[dict[str, Any], list[tuple[str, bytes, bytes]]], Any]
    start_worker: Callable[[str, int, Mapping[str, str]], Any]
    events_handled: Callable[[int], float]
    cpu_seconds: Callable[[int], float]
    free_port: Callable[[], int]
    partitions: int


async def _one(
    kafka: dict[str, Any], tools: _Tools, profile: str, step: timedelta, prior: int
) -> HistoryCost:
    """One deployment: `prior` events of each customer, then the measured rounds."""
    produce, cpu_seconds = tools.produce, tools.cpu_seconds
    names = TopicNames(prefix=f"history-{profile}{prior}.")
    await create_topics(kafka, names, partitions=tools.partitions, replication_factor=1)
    customers = [f"h{prior}-{i:04d}" for i in range(CUSTOMERS)]
    await produce(kafka, _messages(names, [_event(c, i, step) for i in range(prior) for c in customers]))
    port = tools.free_port()
    worker = tools.start_worker(names.prefix, port, _SETTINGS.get(profile, {}))
    try:
        handled = functools.partial(tools.events_handled, port)
        await _wait_for(handled, prior * CUSTOMERS, 900)
        # Everything the worker writes: all topics but the inputs (changelogs included).
        outputs = [t for t in names.all if t not in names.inputs]
        changelogs = names.changelogs[:2]  # customers and history
        before = await _ends(kafka, outputs)
        # What the worker spends idle (its fetch loops and timers, our samples), per
        # second: taken off the rounds' CPU, which at a few thousand events a second it
        # would otherwise dominate.
        idle_from, idle_cpu = time.perf_counter(), cpu_seconds(worker.pid)
        await asyncio.sleep(IDLE_SECONDS)
        idle = (cpu_seconds(worker.pid) - idle_cpu) / (time.perf_counter() - idle_from)
        started, cpu = time.perf_counter(), cpu_seconds(worker.pid)
        for round_ in range(ROUNDS):
            await produce(kafka, _messages(names, [_event(c, prior + round_, step) for c in customers]))
            target = (prior + round_ + 1) * CUSTOMERS
            await _wait_for(handled, target, 120)
        seconds = time.perf_counter() - started
        used = max(0.0, cpu_seconds(worker.pid) - cpu - idle * seconds)
        await asyncio.sleep(1.0)  # the last round's sends acknowledged and readable
        sizes = await _bytes_between(kafka, before, await _ends(kafka, outputs))
    finally:
        worker.terminate()
        worker.wait(30)
    events = ROUNDS * CUSTOMERS
    state_bytes = sum(sizes.get(changelog, 0) for changelog in changelogs)
    return HistoryCost(profile, prior, events, seconds, used, state_bytes, sum(sizes.values()))


def memory_by_history(
    priors: Sequence[int], rules: ScoringRules, customers: int = 200
) -> list[tuple[int, float, float, float]]:
    """(prior, head, stored, decoded) per customer of `prior` events (full profile): its head
    record's size, and the bytes a worker holds for it in its tables (the head and the history's segments, keys included) and
    in its cache of decoded states (deduplication's sets and the windows' heaps included),
    as Python allocated them (tracemalloc)."""
    measured = []
    for prior in priors:
        events = [
            [
                scored(
                    parse_event(
                        json.dumps(_event(f"m-{c:04d}", i)).encode(),
                        expected_type=None,
                        currencies=rules.rates,
                    )
                )
                for i in range(prior)
            ]
            for c in range(customers)
        ]
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        heads: dict[str, bytes] = {}
        history: dict[str, bytes] = {}
        decoded = []
        for stream in events:
            state = CustomerState(stream[0].customer_id, layout=Layout())
            for event in stream:
                apply_event(state, event, rules)
            head, written = to_store(state, state.layout, rules.csat_window_us, rules.cltv_window_us)
            heads[state.customer_id] = head
            history.update((key, value) for key, value in written if value is not None)
            decoded.append(state)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
        decoded.clear()
        gc.collect()
        stored = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        head_bytes = sum(map(len, heads.values())) / customers
        measured.append((prior, head_bytes, stored / customers, (held - stored) / customers))
    return measured
