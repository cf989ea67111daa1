"""Identity through workers (SPEC.md, "Identity"): the `identity/` conformance set streamed
with its identify events, persons' states, lookups by alias, tombstones of absorbed ids,
links sent minus retracted, and the `merges` messages."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest

from tests.fixtures.broker import ON_BOTH_BROKERS, make_env
from tests.integration.helpers import metric_sum, metric_values, publish_conformance, wait_for_states

pytestmark = pytest.mark.integration


def _triple(link: dict[str, Any]) -> tuple[str, str, str]:
    return (link["share_id"], link["referrer_id"], link["referred_id"])


async def _links_standing(env: Any, expected: int, deadline_s: float = 60) -> tuple[Counter[Any], list[Any]]:
    """Links sent minus those retracted on `merges`, once they come to `expected`."""
    deadline = time.monotonic() + deadline_s
    while True:
        sent = Counter(_triple(json.loads(r.value)) for r in await env.read_topic(env.names.referral_links))
        merges = [json.loads(r.value) for r in await env.read_topic(env.names.merges) if r.value]
        standing = Counter(sent)
        for merge in merges:
            for link in merge["links_retracted"]:
                standing[_triple(link)] -= 1
        standing = +standing
        if sum(standing.values()) == expected or time.monotonic() > deadline:
            return standing, merges
        await asyncio.sleep(0.5)


async def _check_identity_stream(env: Any, workers: list[Any], fx: Any, *, single_batches: bool) -> None:
    expected = fx.expected_states
    for worker in workers:
        await wait_for_states(worker, expected, deadline_s=120)
    # Any id of a person answers the person's state, under its canonical id, from any worker.
    aliases = {alias: cid for cid, state in expected.items() for alias in state["aliases"]}
    assert len(aliases) >= 10
    for worker in workers:
        for alias, canonical in aliases.items():
            status, body = await asyncio.to_thread(worker.get, f"/customers/{alias}")
            assert status == 200, (alias, status, body)
            assert body["customer_id"] == canonical and alias in body["aliases"]

    standing, merges = await _links_standing(env, len(fx.expected_links))
    assert standing == Counter(_triple(link) for link in fx.expected_links)  # each exactly once
    # Every id that is an alias now stopped being canonical in some merge, said on `merges`.
    merged = {customer_id for merge in merges for customer_id in merge["merged_ids"]}
    assert set(aliases) <= merged
    assert all(set(m["aliases"]) >= set(m["merged_ids"]) - {m["customer_id"]} for m in merges)
    # ppp-updates: the latest message of every person is its state; an absorbed id that
    # had published one ends in a tombstone.
    latest: dict[str, Any] = {}
    for record in await env.read_topic(env.names.ppp_updates):
        latest[record.key.decode()] = None if record.value is None else json.loads(record.value)
    for cid, state in expected.items():
        assert latest[cid] is not None and round(latest[cid]["ppp"], 2) == round(state["ppp"], 2), cid
    for alias in aliases:
        assert latest.get(alias) is None, alias
    counted = 0.0
    for worker in workers:
        status, text = await asyncio.to_thread(worker.get, "/metrics")
        counted += metric_sum(metric_values(text), "journey_merges_total")
    assert counted == len(merges) > 0


@ON_BOTH_BROKERS
async def test_persons_come_together_on_one_worker(broker: Any, tmp_path: Any, identity_conformance: Any) -> None:
    fx = identity_conformance
    env = await make_env(broker, tmp_path, fx.events_path.parent / "fx.json")
    try:
        worker = env.worker()
        await publish_conformance(env, fx)
        await _check_identity_stream(env, [worker], fx, single_batches=False)
    finally:
        for worker in env.workers:
            worker.kill()
