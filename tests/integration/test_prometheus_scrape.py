"""A real Prometheus scrapes a live worker; its query API sees the counts the events imply."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.brokers.embedded import free_port, wait_for_port
from tests.fixtures.tools import require_tool
from tests.integration.helpers import publish_conformance, wait_for_states

pytestmark = pytest.mark.integration
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"


def query(port: int, expr: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            result = json.loads(response.read())["data"]["result"]
    except urllib.error.HTTPError as exc:
        if exc.code == 503:  # listening, but still starting up
            return None
        raise
    return float(result[0]["value"][1]) if result else None


async def test_prometheus_scrapes_a_live_worker(journey_env: Any, conformance: Any, tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    worker = journey_env.worker()
    await publish_conformance(journey_env, conformance)
    await wait_for_states(worker, conformance.expected_states)
    updates = len(await journey_env.read_topic(journey_env.names.ppp_updates))

    shutil.copy(RULES, tmp_path / "rules.yml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [
            {"job_name": "journey", "static_configs": [{"targets": [f"127.0.0.1:{worker.port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: ASYNC220  # starting it is instant; the test then polls
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        assert await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30), (
            tmp_path / "prometheus.log"
        ).read_text()
        expectations = {
            'sum(journey_events_total{outcome="processed"})': 500.0,
            'sum(journey_events_total{outcome="duplicate"})': 50.0,
            "sum(journey_ppp_updates_total)": float(updates),
            'up{job="journey"}': 1.0,
            "journey_customers": float(len(conformance.expected_states)),
        }
        deadline = time.monotonic() + 60
        seen: dict[str, float | None] = {}
        while time.monotonic() < deadline:
            seen = {expr: await asyncio.to_thread(query, port, expr) for expr in expectations}
            if seen == expectations:
                break
            await asyncio.sleep(1)
        assert seen == expectations
        # The recording rules evaluate against the live series too.
        status, text = worker.get("/metrics")
        assert status == 200
        lag_lines = [line for line in text.splitlines() if line.startswith("journey_consumer_lag")]
        assert lag_lines, text
        recorded = None
        for _ in range(30):
            recorded = await asyncio.to_thread(query, port, "count(journey:consumer_lag:sum)")
            if recorded is not None:
                break
            await asyncio.sleep(0.5)
        assert recorded == 1.0
    finally:
        process.terminate()
        process.wait(20)
