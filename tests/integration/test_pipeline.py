"""The whole pipeline on the embedded broker: conformance events in, every output read back."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from itertools import pairwise
from typing import Any

import pytest

from schemas.outputs import DeadLetter, PppUpdate, ReferralLink
from stream.kafka.topics import INPUT_TOPICS
from tests.fixtures.broker import ON_BOTH_BROKERS
from tests.integration.helpers import (
    conformance_traffic,
    latest_by_key,
    metric_sum,
    metric_values,
    read_links,
    read_until,
    updates_show,
    versions_by_key,
    wait_for_states,
)

pytestmark = pytest.mark.integration


def _self_referrals(events: list[dict[str, Any]]) -> int:
    sharer = {e["share_id"]: e["customer_id"] for e in events if e["type"] == "share"}
    seen = {
        e["event_id"]
        for e in events
        if e["type"] == "touchpoint"
        and e["moment"] == "zmot"
        and sharer.get(e.get("referral_share_id", "")) == e["customer_id"]
    }
    return len(seen)


@ON_BOTH_BROKERS
async def test_conformance_events_through_one_worker(journey_env: Any, conformance: Any) -> None:
    env = journey_env
    names = env.names
    worker = env.worker()
    keyed, misplaced, _ = conformance_traffic(
        conformance.events, conformance.raw_lines, names, env.partitions
    )
    bad = [(names.public(topic), b"bad-key", raw) for topic, raw in conformance.bad_messages]
    # Bad messages in the middle of the good ones: the worker must go on after each.
    await env.produce(keyed[:200] + bad + keyed[200:])
    for topic, partition, key, raw in misplaced:
        await env.produce_to_partition(topic, partition, key, raw)

    states = await wait_for_states(worker, conformance.expected_states)
    assert set(states) == set(conformance.expected_states)

    status, body = worker.get("/customers/no-such-customer")
    assert status == 404
    assert "no-such-customer" in body["error"]

    # A state answers over HTTP as soon as the table holds it, a moment before its update is
    # acknowledged: read until every customer's update is there (Kafka is quick enough to
    # show the moment).
    updates = await read_until(env, names.ppp_updates, updates_show(conformance.expected_states))
    latest = latest_by_key(updates)
    assert set(latest) == set(conformance.expected_states)
    for customer_id, expected in conformance.expected_states.items():
        message = latest[customer_id]
        assert message["customer_id"] == customer_id
        for name in ("csat", "cltv", "ppp"):
            assert round(message[name], 2) == round(expected[name], 2), (customer_id, name)
        assert message["version"] == states[customer_id]["version"]
    for record in updates:
        PppUpdate.model_validate_json(record.value)
    # One worker and no crash: every customer's versions are 1..n in the order read.
    for customer_id, versions in versions_by_key(updates).items():
        assert versions == list(range(1, len(versions) + 1)), customer_id
    by_key: dict[str, list[dict[str, Any]]] = {}
    for record in updates:
        by_key.setdefault(record.key.decode(), []).append(json.loads(record.value))
    for messages in by_key.values():
        assert messages[0]["previous_ppp"] is None
        for before, after in pairwise(messages):
            assert after["previous_ppp"] == before["ppp"]

    links = await read_links(env, len(conformance.expected_links))
    triples = [
        (v["share_id"], v["referrer_id"], v["referred_id"]) for v in (json.loads(r.value) for r in links)
    ]
    expected_links = [(l["share_id"], l["referrer_id"], l["referred_id"]) for l in conformance.expected_links]
    assert sorted(triples) == sorted(expected_links)
    for record in links:
        link = ReferralLink.model_validate_json(record.value)
        assert record.key.decode() == link.referrer_id

    letters = await env.read_topic(names.dead_letters)
    assert len(letters) == len(conformance.bad_messages)
    sent = sorted((names.public(topic), raw) for topic, raw in conformance.bad_messages)
    received = []
    for record in letters:
        letter = DeadLetter.model_validate_json(record.value)
        assert letter.error
        assert letter.key == "bad-key" and record.key == b"bad-key"
        raw = base64.b64decode(letter.value) if letter.value_encoding == "base64" else letter.value.encode()
        received.append((letter.topic, raw))
    assert sorted(received) == sent

    # Lag comes from committed offsets (committed every second) and is refreshed every second.
    deadline = time.monotonic() + 20
    while True:
        status, text = worker.get("/metrics")
        assert status == 200
        values = metric_values(text)
        lag_series = [k for k in values if k[0] == "journey_consumer_lag"]
        if (lag_series and metric_sum(values, "journey_consumer_lag") == 0) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert lag_series, "no journey_consumer_lag series"
    assert metric_sum(values, "journey_events_total", outcome="processed") == 500
    assert metric_sum(values, "journey_events_total", outcome="duplicate") == 50
    assert metric_sum(values, "journey_events_total", outcome="invalid") == len(conformance.bad_messages)
    for topic in INPUT_TOPICS:
        if topic != "identities":  # the base set has no identify event (test_identity.py's has)
            assert metric_sum(values, "journey_events_total", topic=names.public(topic)) > 0
    assert metric_sum(values, "journey_ppp_updates_total") == len(updates)
    assert metric_sum(values, "journey_referral_links_total") == len(links)
    assert metric_sum(values, "journey_self_referrals_total") == _self_referrals(conformance.events) >= 1
    assert metric_sum(values, "journey_customers") == len(conformance.expected_states)
    # Every input message handled, rejected ones too (the time of a batch, shared out).
    assert metric_sum(values, "journey_processing_seconds_count") == 550 + len(conformance.bad_messages)
    assert metric_sum(values, "journey_processing_seconds_sum") > 0
    assert metric_sum(values, "journey_consumer_lag") == 0
    # On Apache Kafka a worker commits in transactions (JOURNEY_EXACTLY_ONCE=auto); the
    # embedded broker runs none. (What was read above was read committed: `read_topic`.)
    status, health = worker.get("/health")
    assert status == 200
    if env.on_kafka:
        assert health["processing"] == "exactly_once" and health["transactions_committed"] > 0, health
    else:
        assert health["processing"] == "at_least_once" and health["transactions_committed"] is None, health
    assert worker.stop() == 0
