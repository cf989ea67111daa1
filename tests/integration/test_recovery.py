"""State survives a killed worker; several workers split the partitions and answer for each other."""

from __future__ import annotations

import asyncio
import json
import time
from itertools import pairwise
from typing import Any

import pytest

from journey.replay import replay_file
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
