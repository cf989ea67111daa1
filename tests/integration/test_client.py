"""The typed Python client against the embedded broker and a live worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from typing import Any

import pytest

from schemas.decode import parse_event
from schemas.outputs import PppUpdate
from stream.clients.client import JourneyConsumer, JourneyProducer
from tests.integration.helpers import wait_for_states

pytestmark = pytest.mark.integration


async def _take(iterator: Any, count: int) -> list[Any]:
    items: list[Any] = []
    # aclosing: leaving the loop early must stop the consumer inside the generator now.
    async with asyncio.timeout(60), contextlib.aclosing(iterator) as updates:
        async for item in updates:
            items.append(item)
            if len(items) == count:
                break
    return items


async def test_producer_feeds_a_worker_and_consumer_reads_scores(journey_env: Any, conformance: Any) -> None:
    env = journey_env
    events = [
        parse_event(line, expected_type=None, currencies=conformance.rates) for line in conformance.raw_lines
    ]
    async with JourneyProducer(env.broker.url, topic_prefix=env.names.prefix) as producer:
        for event in events:
            await producer.send(event)
    worker = env.worker()
    await wait_for_states(worker, conformance.expected_states)

    total = len(await env.read_topic(env.names.ppp_updates))
    consumer = JourneyConsumer(env.broker.url, topic_prefix=env.names.prefix)
    updates = await _take(consumer.ppp_updates(), total)
    latest = {u.customer_id: u for u in updates}
    for customer_id, expected in conformance.expected_states.items():
        assert latest[customer_id].ppp == pytest.approx(expected["ppp"], abs=0.005)

    table = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "cli",
            "tail",
            "ppp-updates",
            "--table",
            "--top",
            "3",
            "--from-beginning",
            "--no-follow",
        ],
        env=env.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.decode().splitlines()
    assert lines[0].startswith(f"top 3 of {len(conformance.expected_states)} customers by PPP")
    best = max(conformance.expected_states.values(), key=lambda s: (s["ppp"], s["customer_id"]))
    assert best["customer_id"] in lines[2]


async def test_consumer_drops_stale_and_repeated_versions(journey_env: Any) -> None:
    env = journey_env

    def update(customer: str, version: int) -> tuple[str, bytes, bytes]:
        message = {
            "customer_id": customer,
            "csat": 5.0,
            "cltv": 10.0,
            "ppp": 50.0 + version,
            "previous_ppp": None,
            "cltv_365d": 10.0,
            "version": version,
            "cause_event_id": f"e{version}",
            "cause_type": "survey",
            "moments": {"zmot": 0, "fmot": 0, "smot": 0, "umot": 0},
            "as_of": "2026-01-01T00:00:00Z",
        }
        return env.names.ppp_updates, customer.encode(), json.dumps(message).encode()

    # After an erasure's tombstone the customer starts again at version 1.
    tombstone: Any = (env.names.ppp_updates, b"a", None)
    await env.produce(
        [
            update("a", 1),
            update("a", 3),
            update("a", 2),
            update("a", 3),
            update("a", 4),
            tombstone,
            update("a", 1),
        ]
    )
    seen: list[PppUpdate] = await _take(
        JourneyConsumer(env.broker.url, topic_prefix=env.names.prefix).ppp_updates(), 4
    )
    assert [u.version for u in seen] == [1, 3, 4, 1]
