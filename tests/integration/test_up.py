"""`journey up --demo` as a new user runs it: updates within 30 s, SIGTERM stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.brokers.embedded import free_port, wait_for_port
from tests.fixtures.broker import WorkerProcess
from tests.integration.helpers import metric_sum, metric_values

pytestmark = pytest.mark.integration


def test_up_demo_shows_updates_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    broker_port, web_port = free_port(), free_port()
    env = {
        **os.environ,
        "JOURNEY_EMBEDDED_PORT": str(broker_port),
        "JOURNEY_WEB_PORT": str(web_port),
        "JOURNEY_DATA_DIR": str(tmp_path / "data"),
        "JOURNEY_SESSION_TIMEOUT": "6",
    }
    env.pop("JOURNEY_BROKER", None)
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "up", "--demo", "--rate", "50"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    probe = WorkerProcess(env=env, log_path=log, port=web_port)
    try:
        deadline = time.monotonic() + 30
        updates = 0.0
        while time.monotonic() < deadline and not updates:
            status, text = probe.get("/metrics")
            if status == 200:
                updates = metric_sum(metric_values(text), "journey_ppp_updates_total")
            time.sleep(0.5)
        assert updates > 0, log.read_text()
        shown = log.read_text()
        assert f"metrics  http://127.0.0.1:{web_port}/metrics" in shown
        assert " csat " in shown and " ppp " in shown
        status, body = probe.get("/customers/demo-000000")
        assert status == 200 and body["customer_id"] == "demo-000000"
        # Forgetting a demo customer: its tombstone shows in the demo's output, and it is gone.
        forget = subprocess.run(
            [sys.executable, "-m", "cli", "forget", "demo-000000", "--timeout", "30"],
            env={**env, "JOURNEY_BROKER": f"kafka://127.0.0.1:{broker_port}"},
            capture_output=True,
            timeout=60,
        )
        assert forget.returncode == 0, forget.stderr
        assert forget.stdout.decode().startswith("demo-000000: "), forget.stdout
        assert probe.get("/customers/demo-000000")[0] == 404
        deadline = time.monotonic() + 10
        while "demo-000000 erased" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "  demo-000000 erased" in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    assert code == 0, log.read_text()[-2000:]
    assert "embedded broker stopped" in log.read_text()
    # A log is no terminal: no escape codes in it (Faust's spinner wrote ESC[?25l there).
    assert "\x1b" not in log.read_text(errors="replace")
    assert not wait_for_port("127.0.0.1", broker_port, 0.5), "the broker outlived journey up"
