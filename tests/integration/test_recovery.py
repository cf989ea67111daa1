"""State survives a killed worker; several workers split the partitions and answer for each other."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from journey.money import load_rates
from journey.replay import replay_file
from journey.scoring import ScoringRules
from tests.fixtures.broker import ON_BOTH_BROKERS, WorkerProcess
from tests.fixtures.conformance import IMPACT_KEYS
from tests.integration.helpers import (
    latest_by_key,
    metric_sum,
    metric_values,
    publish_conformance,
    read_links,
    read_until,
    updates_show,
    versions_by_key,
    wait_for_impact,
    wait_for_states,
)

pytestmark = pytest.mark.integration


async def wait_for_processed(worker: WorkerProcess, count: int, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        status, text = await asyncio.to_thread(worker.get, "/metrics")
        if (
            status == 200
            and metric_sum(metric_values(text), "journey_events_total", outcome="processed") >= count
        ):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"worker did not process {count} events in {deadline_s}s")


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_state_survives_sigkill_and_restart(journey_env: Any, conformance: Any, store: str) -> None:
    env = journey_env
    env.env["JOURNEY_STORE"] = store
    worker = env.worker()
    rest = await publish_conformance(env, conformance, split=len(conformance.events) // 2)
    # Let it work through part of the first half, then kill it without warning.
    await wait_for_processed(worker, 150)
    worker.kill()
    await env.produce(rest)
    restarted = env.worker()
    await wait_for_states(restarted, conformance.expected_states)

    updates = await read_until(env, env.names.ppp_updates, updates_show(conformance.expected_states))
    latest = latest_by_key(updates)
    for customer_id, expected in conformance.expected_states.items():
        for name in ("csat", "cltv", "ppp"):
            assert round(latest[customer_id][name], 2) == round(expected[name], 2), (customer_id, name)
    # A consumer reading in order never has to go back: versions only repeat or grow.
    for customer_id, versions in versions_by_key(updates).items():
        assert all(b >= a for a, b in pairwise(versions)), (customer_id, versions)
    links = [json.loads(r.value) for r in await read_links(env, len(conformance.expected_links))]
    triples = sorted((v["share_id"], v["referrer_id"], v["referred_id"]) for v in links)
    assert triples == sorted(
        (l["share_id"], l["referrer_id"], l["referred_id"]) for l in conformance.expected_links
    )


@ON_BOTH_BROKERS
async def test_two_workers_split_partitions_and_route_lookups(journey_env: Any, conformance: Any) -> None:
    env = journey_env
    first = env.worker()
    second = env.worker()
    await publish_conformance(env, conformance)
    replayed = replay_file(
        conformance.events_path, conformance.rules, currencies=conformance.rates.rates, impact=True
    )
    # The expected states with the impact keys replay gives them: the referral keys come
    # with the links, after the scores, and both workers must be read once they are in.
    keys = {state["customer_id"]: state for state in map(json.loads, replayed.lines)}
    expected = {
        cid: {**want, **{k: keys[cid][k] for k in IMPACT_KEYS}}
        for cid, want in conformance.expected_states.items()
    }
    # Both workers answer for every customer: each asks the owner of the key's partition.
    from_first = await wait_for_states(first, expected)
    from_second = await wait_for_states(second, expected)
    assert from_first == from_second
    touchpoints = env.names.public("touchpoints")
    assignments = []
    for worker in (first, second):
        status, health = worker.get("/health")
        assert status == 200
        assignments.append(set(health["assigned"].get(touchpoints, [])))
    assert all(assignments), assignments
    assert not (assignments[0] & assignments[1]), assignments
    assert assignments[0] | assignments[1] == set(range(env.partitions))
    # Either worker answers every impact request, rankings over all partitions included.
    assert replayed.impact is not None
    await wait_for_impact(env, [first, second], replayed.impact)


def _loyal_events(customers: int, count: int) -> list[dict[str, Any]]:
    """Events of customers with long histories: one every five days, so that their windows
    fill and empty again, and their logs fill segments (`journey.stored`)."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    events = []
    for index in range(count):
        for number in range(customers):
            customer = f"loyal-{number:02d}"
            at = (start + timedelta(days=5 * index, minutes=number)).isoformat().replace("+00:00", "Z")
            common = {"event_id": f"{customer}-{index}", "customer_id": customer, "occurred_at": at}
            if index % 3 == 0:
                moment = ("zmot", "fmot", "smot")[min(index, 2)]
                events.append(
                    {"type": "touchpoint", **common, "moment": moment, "channel": "app", "sentiment": 0.5}
                )
            elif index % 3 == 1:
                kind = "refund" if index % 7 == 0 else "purchase"
                events.append(
                    {
                        "type": "purchase",
                        **common,
                        "kind": kind,
                        "order_id": f"o-{index}",
                        "amount": "20.00",
                        "currency": "USD",
                    }
                )
            else:
                events.append({"type": "survey", **common, "score": 1 + index % 10, "scale": "1-10"})
    return events


@ON_BOTH_BROKERS
async def test_long_histories_survive_sigkill_and_duplicates_stay_duplicates(
    journey_env: Any, tmp_path: Any
) -> None:
    """Customers of 100 events: a worker killed after 70 of each, a new one given the other
    30 and 40 duplicates of the early ones (whose event_ids live in sealed segments only,
    read back from the history changelog): every duplicate is one, the states equal replay,
    and the windows' expired segments are deleted from the changelog."""
    env = journey_env
    events = _loyal_events(12, 100)
    messages = [
        (env.names.for_type(e["type"]), e["customer_id"].encode(), json.dumps(e).encode()) for e in events
    ]
    early = [m for m, e in zip(messages, events, strict=True) if int(e["event_id"].rsplit("-", 1)[1]) < 40]
    cut = 70 * 12
    worker = env.worker()
    # In rounds of ten events a customer, each handled before the next: one round's
    # touchpoints, purchases and surveys come on three topics in any order, so only rounds
    # keep the windows full (an entry that comes after its window moved on never enters).
    for done in range(120, cut + 1, 120):
        await env.produce(messages[done - 120 : done])
        await wait_for_processed(worker, done, deadline_s=60)
    worker.kill()
    await env.produce(messages[cut:] + early)
    restarted = env.worker()
    path = tmp_path / "loyal.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    rules = ScoringRules(rates=load_rates(None, "USD"))
    replayed = replay_file(path, rules, currencies=rules.rates)
    expected = {state["customer_id"]: state for state in map(json.loads, replayed.lines)}
    assert replayed.events == len(events) and len(expected) == 12
    await wait_for_states(restarted, expected, deadline_s=120)
    status, text = await asyncio.to_thread(restarted.get, "/metrics")
    duplicates = metric_sum(metric_values(text), "journey_events_total", outcome="duplicate")
    # (And the redelivered events the killed worker had not committed: duplicates too.)
    assert status == 200 and duplicates >= len(early), (duplicates, len(early))
    history = {
        r.key.decode(): r.value for r in await env.read_topic(f"{env.names.prefix}journey-history-changelog")
    }
    assert any(value is None for value in history.values()), "expired window segments are deleted"
    assert sum(value is not None for value in history.values()) >= 12 * 100 // 16, "seen segments are kept"
