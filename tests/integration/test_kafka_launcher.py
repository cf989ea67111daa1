"""`journey kafka up`: the launcher the tests use, as a person runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_commands import journey

pytestmark = pytest.mark.integration


def test_kafka_up_serves_journey_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "kafka", "up", "--dir", str(tmp_path / "kafka")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()  # printed once the broker answers
        assert line.startswith("export JOURNEY_BROKER=kafka://127.0.0.1:"), line
        url = line.split("=", 1)[1].strip()
        env = {**os.environ, "JOURNEY_BROKER": url, "JOURNEY_TOPIC_PREFIX": "launcher."}
        created = journey(env, "topics", "create")
        assert created.returncode == 0, created.stderr
        checked = journey(env, "topics", "check")
        assert checked.returncode == 0, checked.stderr
        assert (tmp_path / "kafka" / "node-1" / "server.log").stat().st_size > 0
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert time.monotonic() - started < 30
        # Nothing listens there any more.
        gone = journey(env, "topics", "check", timeout=60)
        assert gone.returncode != 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def test_kafka_up_without_the_jars_says_so_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "JOURNEY_KAFKA_JARS": str(tmp_path / "none")}
    result = journey(env, "kafka", "up", "--dir", str(tmp_path / "k"))
    assert result.returncode == 1
    said = result.stderr.decode().strip().splitlines()[-1]
    assert said.startswith("journey: error: no Kafka ") and "make kafka" in said
    assert "Traceback" not in result.stderr.decode()
