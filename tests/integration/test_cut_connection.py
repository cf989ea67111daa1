"""A cut connection: a TCP proxy between the worker and one Kafka node drops every
connection mid-stream, twice, then stalls them for longer than the session timeout. The
worker reconnects and ends where replay does; /health and the metrics say what happened."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stream.brokers.apache import KafkaCluster
from tests.fixtures.broker import WorkerProcess, make_env
from tests.fixtures.proxy import CuttingProxy
from tests.integration.helpers import metric_sum, metric_values
from tests.integration.test_faults import (
    FX,
    check_outputs,
    processed,
    produce_events,
    seeded_workload,
    wait_until_quiet,
)

pytestmark = pytest.mark.integration

# Longer than the workers' JOURNEY_SESSION_TIMEOUT (6 s): the group drops the worker.
_STALL_S = 14.0


@dataclass(frozen=True)
class _Direct:
    """The node as the test's own clients reach it: past the proxy."""

    bootstrap: list[str]
    url: str


def _health(worker: WorkerProcess) -> dict[str, Any]:
    status, body = worker.get("/health")
    assert status == 200, body
    return dict(body)


def _silence(worker: WorkerProcess) -> float:
    status, text = worker.get("/metrics")
    assert status == 200
    return metric_sum(metric_values(text), "journey_broker_silence_seconds")


async def _until(check: Any, deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.25)


async def test_cut_and_stalled_connections_end_where_replay_does(tmp_path: Path) -> None:
    proxy = CuttingProxy(target=0)
    cluster = KafkaCluster(tmp_path / "kafka", 1, advertised_ports={1: proxy.port})
    await asyncio.to_thread(cluster.start)
    try:
        proxy.target = cluster.node(1).port
        await proxy.start()
        direct = _Direct(cluster.direct_bootstrap, "kafka://" + ",".join(cluster.direct_bootstrap))
        env = await make_env(direct, tmp_path, FX, worker_url=cluster.url)
        work = seeded_workload(3_000, seed=25)
        third = len(work.raws) // 3
        # Everything that blocks runs in a thread: the proxy lives on this event loop.
        worker = await asyncio.to_thread(env.worker)
        await _until(lambda: _health(worker)["broker"]["reachable"], 30, "the worker never reached Kafka")
        await produce_events(env, work.raws[:third])
        await _until(lambda: processed(worker) > third / 3, 60, "the worker never got going")

        # Twice: every connection dropped in the middle of the stream.
        for part, more in ((1, work.raws[third : 2 * third]), (2, [])):
            before = proxy.connections
            assert proxy.cut() > 0
            await produce_events(env, more)
            await _until(lambda seen=before: proxy.connections > seen, 30, "the worker never reconnected")
            await _until(
                lambda share=part: processed(worker) > third * share * 0.8, 90, "no progress after a cut"
            )

        # A stall longer than the session: no byte passes, the connections stay open.
        proxy.stall()
        await produce_events(env, work.raws[2 * third :])
        await asyncio.sleep(_STALL_S)
        cut_off = await asyncio.to_thread(_health, worker)
        assert cut_off["broker"]["reachable"] is False, cut_off
        assert cut_off["broker"]["last_answer_seconds_ago"] >= 10, cut_off
        assert await asyncio.to_thread(_silence, worker) >= 10
        proxy.resume()
        await _until(lambda: _health(worker)["broker"]["reachable"], 60, "the worker never heard back")

        await wait_until_quiet([worker], work.expected, deadline_s=180)
        await check_outputs(env, work, [worker])
        assert await asyncio.to_thread(_silence, worker) < 10
        # Its lag came back to nothing: every event handled and committed.
        await _until(
            lambda: metric_sum(metric_values(worker.get("/metrics")[1]), "journey_consumer_lag") == 0,
            60,
            "the lag never came back to 0",
        )
        assert await asyncio.to_thread(worker.stop) == 0
    finally:
        for started in env.workers if "env" in locals() else []:
            started.kill()
        await proxy.stop()
        await asyncio.to_thread(cluster.stop)
