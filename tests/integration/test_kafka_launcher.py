"""`journey kafka up`: the launcher the tests use, as a person runs it."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_commands import journey

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def _kafka_up(folder: Path, env: dict[str, str], *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """`journey kafka up` running, killed at the end if the test did not stop it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "kafka", "up", *options, "--dir", str(folder)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def test_kafka_up_serves_journey_and_stops_on_sigterm(tmp_path: Path) -> None:
    with _kafka_up(tmp_path / "kafka", dict(os.environ)) as process:
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


def test_kafka_up_without_the_jars_says_so_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "JOURNEY_KAFKA_JARS": str(tmp_path / "none")}
    result = journey(env, "kafka", "up", "--dir", str(tmp_path / "k"))
    assert result.returncode == 1
    said = result.stderr.decode().strip().splitlines()[-1]
    assert said.startswith("journey: error: no Kafka ") and "make kafka" in said
    assert "Traceback" not in result.stderr.decode()


def test_kafka_up_secure_prints_settings_that_journey_runs_with(tmp_path: Path) -> None:
    # As a user would: eval the printed settings, then create topics and stream simulated
    # journeys as the `journey` user, which has only its deployment's ACLs.
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")}
    env["JOURNEY_TOPIC_PREFIX"] = "secured."
    saved = tmp_path / "kafka.env"
    with _kafka_up(tmp_path / "kafka", env, "--secure", "--env-file", str(saved)) as process:
        assert process.stdout is not None
        settings: dict[str, str] = {}
        while "JOURNEY_SSL_CA_FILE" not in settings or "JOURNEY_TOPIC_PREFIX" not in settings:
            line = process.stdout.readline().decode()
            assert line.startswith("export JOURNEY_"), line
            name, value = shlex.split(line.removeprefix("export "))[0].split("=", 1)
            settings[name] = value
        assert settings["JOURNEY_SECURITY_PROTOCOL"] == "SASL_SSL"
        # The same lines in the file another shell sources, which only its owner reads.
        assert saved.stat().st_mode & 0o777 == 0o600
        sourced = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1)
            for line in saved.read_text().splitlines()
        )
        assert sourced == settings
        assert settings["JOURNEY_SASL_USERNAME"] == "journey"
        user = {**env, **settings}
        created = journey(user, "topics", "create")
        assert created.returncode == 0, created.stderr
        streamed = journey(user, "simulate", "--customers", "5", "--as-fast-as-possible", "--limit", "40")
        assert streamed.returncode == 0, streamed.stderr
        tailed = journey(user, "tail", "touchpoints", "--from-beginning", "--no-follow")
        assert tailed.returncode == 0 and tailed.stdout.strip(), tailed.stderr
        # Another deployment's topics are not the journey user's.
        other = journey({**user, "JOURNEY_TOPIC_PREFIX": "other."}, "topics", "create", timeout=60)
        said = other.stderr.decode().strip().splitlines()
        assert other.returncode != 0 and len(said) == 1, other.stderr
        assert said[0] == "journey: error: cannot create topic other.touchpoints: Authorization failed.", said
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
