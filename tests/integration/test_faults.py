"""Proven under faults: killed workers, a takeover, and hostile input, compared with replay."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from journey.event_files import FileLine
from journey.impact import contribution, impact_report
from journey.money import load_rates
from journey.referrals import join_all
from journey.replay import people_of, replay
from journey.scoring import ScoringRules
from journey.simulate import JourneySimulator
from schemas.decode import parse_event
from schemas.events import Identify
from schemas.outputs import DeadLetter
from tests.fixtures.broker import ON_BOTH_BROKERS, WorkerProcess
from tests.integration.helpers import (
    latest_by_key,
    metric_sum,
    metric_values,
    read_until,
    updates_show,
    versions_by_key,
    wait_for_impact,
    wait_for_platinum,
)
from tests.integration.outputs import assert_outputs_valid

pytestmark = pytest.mark.integration
FX = Path(__file__).resolve().parents[2] / "deploy" / "fx-rates.json"


def seeded_events(count: int, seed: int, *, identity: bool = True) -> list[dict[str, Any]]:
    """A simulated workload in event-time order, about 8 events a customer; with `identity`,
    one customer in twenty researches under a device id until its first purchase identifies
    it (SPEC.md, "Identity")."""
    rates = load_rates(FX, "USD")
    simulator = JourneySimulator(
        seed=seed, customers=count // 5, currencies=sorted(rates.rates), anonymous_every=20 if identity else 0
    )
    return list(simulator.events(count))


def hot_and_shuffled(events: list[dict[str, Any]], seed: int, customers: int) -> list[dict[str, Any]]:
    """Another shape: a few customers with hundreds of events each (self-referrals among them),
    delivered far out of event-time order, with a few percent sent again much later."""
    chooser = random.Random(seed)
    merged = [
        {**e, "customer_id": f"hot-{int(e['customer_id'].rsplit('-', 1)[1]) % customers}"} for e in events
    ]
    order = sorted(range(len(merged)), key=lambda i: i + chooser.uniform(0, len(merged) / 4))
    shuffled = [merged[i] for i in order]
    for _ in range(len(shuffled) // 30):
        at = chooser.randrange(len(shuffled))
        shuffled.insert(chooser.randrange(at, len(shuffled) + 1), shuffled[at])
    return shuffled


@dataclass(frozen=True)
class Workload:
    """Events (JSON) and what replay says they make: states without version, the links, and
    the impact entries with their comparisons."""

    raws: list[bytes]
    expected: dict[str, dict[str, Any]]
    links: set[tuple[str, str, str]]
    impact: list[dict[str, Any]]


def seeded_workload(count: int, seed: int, events: list[dict[str, Any]] | None = None) -> Workload:
    rates = load_rates(FX, "USD")
    if events is None:
        events = seeded_events(count, seed)
    raws = [json.dumps(e).encode() for e in events]
    parsed = [parse_event(raw, expected_type=None, currencies=rates) for raw in raws]
    lines = (
        FileLine(Path("workload"), n, event, raw)
        for n, (raw, event) in enumerate(zip(raws, parsed, strict=True))
    )
    people = people_of(event for event in parsed if isinstance(event, Identify))
    result = replay(lines, ScoringRules(rates=rates), people=people)
    states = result.states
    views = {cid: {k: v for k, v in s.view().items() if k != "version"} for cid, s in states.items()}
    # Links between persons, as replay makes them.
    links = {_triple(link) for link in join_all([sighting for _, sighting in result.sightings])}
    return Workload(raws, views, links, impact_report(contribution(s) for s in states.values()))


def _triple(link: dict[str, Any]) -> tuple[str, str, str]:
    return (link["share_id"], link["referrer_id"], link["referred_id"])


async def produce_events(env: Any, raws: list[bytes], *, miskey_every: int = 17) -> None:
    messages = []
    for index, raw in enumerate(raws):
        event = json.loads(raw)
        key = (
            event["customer_id"].encode()
            if index % miskey_every
            else b"wrong-" + event["customer_id"].encode()
        )
        messages.append((env.names.for_type(event["type"]), key, raw))
    await env.produce(messages)


def processed(worker: WorkerProcess) -> float:
    status, text = worker.get("/metrics")
    return metric_sum(metric_values(text), "journey_events_total") if status == 200 else 0.0


async def wait_until_quiet(
    workers: list[WorkerProcess], expected: dict[str, dict[str, Any]], deadline_s: float
) -> None:
    """Every customer's HTTP state (asked of any live worker) equals replay, but for version."""
    deadline = time.monotonic() + deadline_s
    pending = set(expected)
    while pending and time.monotonic() < deadline:
        worker = workers[0]
        for customer_id in sorted(pending):
            status, body = await asyncio.to_thread(worker.get, f"/customers/{customer_id}")
            if status == 200 and {k: v for k, v in body.items() if k != "version"} == expected[customer_id]:
                pending.discard(customer_id)
        if pending:
            await asyncio.sleep(1)
    assert not pending, f"{len(pending)} customers differ from replay, e.g. {sorted(pending)[:3]}"


async def check_outputs(env: Any, work: Workload, workers: list[WorkerProcess]) -> None:
    expected, links = work.expected, work.links
    updates = await read_until(env, env.names.ppp_updates, updates_show(expected))
    latest = latest_by_key(updates)
    assert set(latest) == set(expected)
    for customer_id, state in expected.items():
        got = latest[customer_id]
        assert (got["csat"], got["cltv"], got["ppp"]) == (state["csat"], state["cltv"], state["ppp"]), (
            customer_id
        )
    for customer_id, versions in versions_by_key(updates).items():
        assert all(b >= a for a, b in pairwise(versions)), f"{customer_id}: {versions}"
    # Links sent minus those a merge retracted: each link of replay, exactly once.
    deadline = time.monotonic() + 60
    while True:
        standing = Counter(
            _triple(json.loads(r.value)) for r in await env.read_topic(env.names.referral_links)
        )
        for record in await env.read_topic(env.names.merges):
            standing.subtract(_triple(link) for link in json.loads(record.value)["links_retracted"])
        if +standing == Counter(links) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert +standing == Counter(links), "each referral link exactly once"
    # No contribution lost or counted twice: every entry, on the topic and over HTTP.
    assert len(work.impact) > 20
    await wait_for_impact(env, workers, work.impact, deadline_s=120)


@ON_BOTH_BROKERS
async def test_crash_equivalence_with_three_sigkills(journey_env: Any) -> None:
    env = journey_env
    env.env["JOURNEY_FX_RATES"] = str(FX)
    work = seeded_workload(20_000, seed=7)
    await produce_events(env, work.raws)
    chooser = random.Random(7)
    kill_points = sorted(chooser.uniform(0.1, 0.8) * len(work.raws) for _ in range(3))
    await kill_at_and_compare(env, kill_points, work)


async def kill_at_and_compare(env: Any, points: list[float], work: Workload) -> None:
    """One worker, SIGKILLed once the workers so far have handled each of `points` events
    and started again; then every output is compared with replay. (Counted over all of
    them: a worker in transactions reads again only what its predecessor had not committed,
    so one worker alone may never reach a later point.)"""
    worker = env.worker()
    before = 0.0  # handled by the killed ones, as last seen
    for point in points:
        deadline = time.monotonic() + 120
        seen = 0.0
        while before + (seen := processed(worker) or seen) < point and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert time.monotonic() < deadline, f"the workers handled {before + seen} events of {point}"
        before += seen
        worker.kill()
        worker = env.worker()
    await wait_until_quiet([worker], work.expected, deadline_s=240)
    await check_outputs(env, work, [worker])


async def test_crash_equivalence_with_hot_customers_out_of_order(journey_env: Any) -> None:
    env = journey_env
    env.env["JOURNEY_FX_RATES"] = str(FX)
    events = hot_and_shuffled(seeded_events(12_000, seed=23), seed=23, customers=40)
    work = seeded_workload(len(events), seed=23, events=events)
    assert len(work.expected) == 40 and work.links
    await produce_events(env, work.raws, miskey_every=13)
    await kill_at_and_compare(env, [0.3 * len(work.raws), 0.6 * len(work.raws)], work)


@ON_BOTH_BROKERS
async def test_survivor_takes_over_a_killed_workers_partitions(journey_env: Any) -> None:
    env = journey_env
    env.env["JOURNEY_FX_RATES"] = str(FX)
    # The way a cluster whose leaders differ sends updates (after their states'
    # acknowledgement); the crash tests above take the embedded broker's (in one request).
    env.env["JOURNEY_UPDATES_WITH_STATES"] = "false"
    work = seeded_workload(10_000, seed=11)
    raws = work.raws
    first, second = env.worker(), env.worker()
    touchpoints = env.names.public("touchpoints")

    def owned(worker: WorkerProcess) -> set[int]:
        status, health = worker.get("/health")
        return set(health["assigned"].get(touchpoints, [])) if status == 200 else set()

    deadline = time.monotonic() + 60
    while not (owned(first) and owned(second)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert owned(first) and owned(second), "the two workers never shared the partitions"
    await produce_events(env, raws)
    while processed(first) + processed(second) < len(raws) / 3:
        await asyncio.sleep(0.05)
    first.kill()
    killed_at = time.monotonic()
    while owned(second) != set(range(env.partitions)):
        assert time.monotonic() - killed_at < 60, "no takeover within a minute"
        await asyncio.sleep(0.1)
    takeover = time.monotonic() - killed_at
    print(
        f"takeover after SIGKILL: {takeover:.1f} s (session timeout {env.env['JOURNEY_SESSION_TIMEOUT']} s)"
    )
    assert takeover < 20
    await wait_until_quiet([second], work.expected, deadline_s=180)
    await check_outputs(env, work, [second])
    # The platinum customers of the killed worker's partitions come back: rebuilt by the survivor.
    await wait_for_platinum(second, work.expected)


def nasty_corpus() -> list[tuple[str, bytes]]:
    good = {"event_id": "n", "customer_id": "nasty", "occurred_at": "2026-01-01T00:00:00Z", "score": 5}
    cases = [
        b"\xff\xfe\xfa not utf-8",
        b'{"event_id": "x", "channel": "' + b"x" * 5_000_000 + b'"}',
        b"[" * 10_000 + b"]" * 10_000,
        b'{"score": NaN}',
        b'{"score": Infinity}',
        json.dumps({**good, "score": int("9" * 400)}).encode(),
        json.dumps({**good, "score": "high"}).encode(),
        json.dumps({**good, "event_id": 12}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "occurred_at"}).encode(),
        json.dumps({**good, "occurred_at": "2026-01-01T00:00:00"}).encode(),
        b"",
        b"null",
        b'"just a string"',
    ]
    purchase = {
        "event_id": "p",
        "customer_id": "nasty",
        "occurred_at": "2026-01-01T00:00:00Z",
        "order_id": "o",
        "currency": "USD",
    }
    purchases = [
        b'{"event_id": "p", "customer_id": "nasty", "occurred_at": "2026-01-01T00:00:00Z", "order_id": "o", '
        b'"currency": "USD", "amount": 1e308}',
        json.dumps({**purchase, "amount": "1e308"}).encode(),
        json.dumps({**purchase, "amount": True}).encode(),
    ]
    return [("surveys", raw) for raw in cases] + [("purchases", raw) for raw in purchases]


async def test_hostile_input_lands_in_dead_letters_once_and_the_worker_stays_well(journey_env: Any) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    env = journey_env
    bad = nasty_corpus()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(
        st.one_of(
            st.binary(max_size=200),
            st.dictionaries(
                st.text(max_size=8),
                st.recursive(
                    st.none() | st.booleans() | st.floats() | st.text(max_size=20),
                    lambda inner: (
                        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                    ),
                    max_leaves=8,
                ),
                max_size=5,
            ).map(lambda d: json.dumps(d).encode()),
        )
    )
    def collect(raw: bytes) -> None:
        bad.append(("touchpoints", raw))

    collect()
    good = [
        (
            "surveys",
            json.dumps(
                {
                    "event_id": f"g{i}",
                    "customer_id": f"good-{i % 7}",
                    "occurred_at": "2026-01-01T00:00:00Z",
                    "score": 1 + i % 10,
                }
            ).encode(),
        )
        for i in range(50)
    ]
    worker = env.worker()
    assert worker.process is not None
    rss_before = _rss_kb(worker.process.pid)
    messages = [(env.names.public(topic), b"k", raw) for topic, raw in bad + good]
    random.Random(3).shuffle(messages)
    await env.produce(messages, max_request_size=8_000_000)
    deadline = time.monotonic() + 120
    while processed(worker) < len(messages) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    values = metric_values(worker.get("/metrics")[1])
    assert metric_sum(values, "journey_events_total", outcome="processed") == len(good)
    assert metric_sum(values, "journey_events_total", outcome="invalid") == len(bad)
    letters = [DeadLetter.model_validate_json(r.value) for r in await env.read_topic(env.names.dead_letters)]
    assert len(letters) == len(bad)
    assert len({(letter.topic, letter.partition, letter.offset) for letter in letters}) == len(bad)
    assert all(letter.error for letter in letters)
    assert any(letter.value_truncated for letter in letters)
    # Every dead letter of hostile input is valid under the exported schema, as read outside.
    counts = await assert_outputs_valid(env)
    assert counts["dead-letters"] == len(bad), counts
    status, _ = worker.get("/health")
    assert status == 200
    for i in range(7):
        assert worker.get(f"/customers/good-{i}")[0] == 200
    # A 5 MB message is rejected by size before parsing; the worker does not keep it.
    assert _rss_kb(worker.process.pid) - rss_before < 150_000


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
