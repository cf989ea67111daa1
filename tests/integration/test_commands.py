"""`journey publish`, `journey tail` and `journey simulate` against a live worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import wait_for_states

pytestmark = pytest.mark.integration


def journey(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, timeout=timeout, check=False
    )


async def test_publish_then_tail_the_scores(journey_env: Any, tmp_path: Path) -> None:
    env = journey_env.env
    events = tmp_path / "events.jsonl"
    made = journey(env, "simulate", "--customers", "40", "--seed", "11", "--out", str(events))
    assert made.returncode == 0, made.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"type": "survey", "event_id": "b", "customer_id": "x"}\n')

    strict = journey(env, "publish", "--strict", str(events), str(broken))
    assert strict.returncode == 1
    assert f"{broken}:1: occurred_at: Field required".encode() in strict.stderr
    assert b"nothing sent" in strict.stderr

    dry = journey(env, "publish", "--dry-run", str(events))
    assert dry.returncode == 0 and b"nothing sent" in dry.stdout

    sent = journey(env, "publish", str(events), str(broken))
    assert sent.returncode == 0, sent.stderr
    count = len(events.read_text().splitlines())
    assert f"sent {count} events".encode() in sent.stdout
    assert b"1 invalid lines skipped" in sent.stdout

    replayed = journey(env, "replay", str(events))
    expected = {s["customer_id"]: s for s in map(json.loads, replayed.stdout.splitlines())}
    worker = journey_env.worker()
    await wait_for_states(worker, expected)

    some = sorted(expected)[0]
    tailed = journey(env, "tail", "ppp-updates", "--from-beginning", "--key", some)
    assert tailed.returncode == 0, tailed.stderr
    updates = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert updates and all(u["customer_id"] == some for u in updates)
    assert updates[-1]["ppp"] == expected[some]["ppp"]
    limited = journey(env, "tail", "ppp-updates", "--from-beginning", "--limit", "5")
    assert len(limited.stdout.splitlines()) == 5
    missing = journey(env, "tail", "no-such-topic", "--from-beginning")
    assert missing.returncode == 1
    assert missing.stderr.decode().strip().endswith("does not exist on " + env["JOURNEY_BROKER"])


async def test_worker_refuses_topics_that_are_not_co_partitioned(broker: Any, tmp_path: Path) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from stream.kafka.admin import create_topics
    from stream.kafka.topics import TopicNames

    names = TopicNames(prefix="mismatch.")
    kafka = {"bootstrap_servers": [f"127.0.0.1:{broker.port}"]}
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(names.public("surveys"), num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    with pytest.raises(RuntimeError, match="disagree on partition counts"):
        await create_topics(kafka, names, partitions=4, replication_factor=1)
    env = {
        **dict(os.environ),
        "JOURNEY_BROKER": broker.url,
        "JOURNEY_TOPIC_PREFIX": names.prefix,
        "JOURNEY_DATA_DIR": str(tmp_path),
    }
    result = await asyncio.to_thread(journey, env, "worker", timeout=60)
    assert result.returncode == 1
    [line] = result.stderr.decode().strip().splitlines()
    assert line.startswith("journey: error: co-partitioned topics disagree on partition counts")
    assert "mismatch.surveys=2" in line and "mismatch.touchpoints=4" in line
    checked = await asyncio.to_thread(journey, env, "topics", "check")
    assert checked.returncode == 1 and b"mismatch.surveys=2" in checked.stderr
