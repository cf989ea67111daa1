"""journey on a secured Apache Kafka: SASL_SSL with SCRAM-SHA-512 and mutual TLS, the
standard authorizer, and a `journey` user with only the ACLs `journey_acls` lists
(`journey kafka up --secure` starts the same). Every process is the real command."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shlex
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.kafka import secured_settings
from journey.settings import Settings
from schemas.outputs import PppUpdate
from stream.brokers.apache import KafkaCluster
from stream.brokers.embedded import free_port
from stream.brokers.secure import grant, journey_acls
from stream.clients.client import JourneyConsumer
from stream.kafka.connection import kafka_options
from stream.kafka.topics import TopicNames
from tests.fixtures.broker import WorkerProcess
from tests.integration.helpers import wait_for_states

pytestmark = pytest.mark.integration

_PREFIXES = iter(range(1, 1000))


@pytest.fixture(scope="session")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One secured Kafka node for the session."""
    with KafkaCluster(tmp_path_factory.mktemp("secured"), 1, secure=True) as running:
        yield running


def journey(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, timeout=timeout, check=False
    )


async def _deployment(
    cluster: KafkaCluster, fx: Path, *, mtls: bool, without: str | None = None
) -> tuple[dict[str, str], TopicNames]:
    """A new topic prefix with journey's ACLs granted (but those on resources of the kind
    `without`), and the environment of its processes."""
    prefix = f"s{next(_PREFIXES)}-{os.getpid()}."
    names = TopicNames(prefix)
    acls = [acl for acl in journey_acls(prefix) if acl.kind != without]
    await grant(cluster.admin_options(), "User:journey", acls)
    exports = secured_settings(cluster, prefix, mtls=mtls)
    settings = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in exports)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")},
        **settings,
        "JOURNEY_TOPIC_PREFIX": prefix,
        "JOURNEY_FX_RATES": str(fx),
        "JOURNEY_SESSION_TIMEOUT": "6",
        "JOURNEY_LOG_LEVEL": "info",
    }
    return env, names


@pytest.mark.parametrize("listener", ["sasl_ssl", "mtls"])
async def test_every_process_of_journey_on_a_secured_cluster(
    secured_kafka: KafkaCluster, conformance: Any, tmp_path: Path, listener: str
) -> None:
    env, _ = await _deployment(secured_kafka, conformance.root / "fx.json", mtls=listener == "mtls")
    made = journey(env, "topics", "create")
    assert made.returncode == 0, made.stderr
    checked = journey(env, "topics", "check")
    assert checked.returncode == 0, checked.stderr
    # Two workers share the partitions.
    count = 2
    workers = [
        WorkerProcess(
            env={**env, "JOURNEY_WORKER_NAME": f"w{i}", "JOURNEY_DATA_DIR": str(tmp_path / f"data-{i}")},
            log_path=tmp_path / f"worker-{i}.log",
        ).start()
        for i in range(count)
    ]
    try:
        sent = journey(env, "publish", str(conformance.events_path))
        assert sent.returncode == 0, sent.stderr
        for worker in workers:
            await wait_for_states(worker, conformance.expected_states, deadline_s=120)
            status, health = worker.get("/health")
            assert status == 200 and health["processing"] == "exactly_once", health
        tailed = journey(env, "tail", "ppp-updates", "--from-beginning", "--no-follow")
        assert tailed.returncode == 0, tailed.stderr
        updates = [json.loads(line) for line in tailed.stdout.decode().splitlines()]
        assert {u["customer_id"] for u in updates} == set(conformance.expected_states)
        # The typed client, with the connection options every journey client uses.
        read = await _client_updates(env, len(conformance.expected_states))
        assert {u.customer_id for u in read} == set(conformance.expected_states)
        customer = sorted(conformance.expected_states)[0]
        forgot = journey(env, "forget", customer, "--timeout", "60")
        assert forgot.returncode == 0, forgot.stderr
        assert forgot.stdout.decode().startswith(f"{customer}: "), forgot.stdout
        status, _ = await asyncio.to_thread(workers[0].get, f"/customers/{customer}")
        assert status == 404
        # Simulated journeys stream as the same user, last: they are no conformance events.
        simulated = journey(env, "simulate", "--customers", "5", "--as-fast-as-possible", "--limit", "30")
        assert simulated.returncode == 0, simulated.stderr
    finally:
        for worker in workers:
            worker.kill()
    password = env.get("JOURNEY_SASL_PASSWORD")
    if password:
        assert password not in json.dumps(health)
        for worker in workers:
            assert password not in worker.log_path.read_text(errors="replace")
        for done in (made, checked, sent, tailed, forgot, simulated):
            assert password.encode() not in done.stdout + done.stderr


async def _client_updates(env: dict[str, str], customers: int) -> list[PppUpdate]:
    """The latest update of each customer, read by `JourneyConsumer` with `env`'s settings."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("JOURNEY_")}
    try:
        os.environ.update({k: v for k, v in env.items() if k.startswith("JOURNEY_")})
        settings = Settings()
    finally:
        for name in [k for k in os.environ if k.startswith("JOURNEY_")]:
            del os.environ[name]
        os.environ.update(saved)
    options = {k: v for k, v in kafka_options(settings).items() if k != "bootstrap_servers"}
    consumer = JourneyConsumer(settings.broker_url, topic_prefix=settings.topic_prefix, **options)
    latest: dict[str, PppUpdate] = {}
    async with asyncio.timeout(60), contextlib.aclosing(consumer.ppp_updates()) as updates:
        async for update in updates:
            latest[update.customer_id] = update
            if len(latest) == customers:
                break
    return list(latest.values())


def _case(cluster: KafkaCluster, env: dict[str, str], case: str) -> dict[str, str]:
    assert cluster.secure is not None
    folder = cluster.secure.folder
    mtls = {
        "JOURNEY_BROKER": "kafka://" + ",".join(cluster.mtls_bootstrap),
        "JOURNEY_SECURITY_PROTOCOL": "SSL",
        "JOURNEY_SSL_CERT_FILE": str(folder / "stranger.crt"),
        "JOURNEY_SSL_KEY_FILE": str(folder / "stranger.key"),
    }
    changes = {
        "wrong password": {"JOURNEY_SASL_PASSWORD": "not-the-password"},
        "unknown user": {"JOURNEY_SASL_USERNAME": "nobody"},
        "a CA that is not the broker's": {"JOURNEY_SSL_CA_FILE": str(folder / "other-ca.pem")},
        "a certificate the broker does not trust": mtls,
        "SASL_SSL against a port without TLS": {"JOURNEY_BROKER": f"kafka://{cluster.direct_bootstrap[0]}"},
    }[case]
    if case == "a certificate the broker does not trust":
        env = {k: v for k, v in env.items() if not k.startswith("JOURNEY_SASL_")}
    return {**env, **changes}


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("wrong password", "SaslAuthenticationFailed"),
        ("unknown user", "SaslAuthenticationFailed"),
        ("a CA that is not the broker's", "CERTIFICATE_VERIFY_FAILED"),
        ("a certificate the broker does not trust", "does it trust the client certificate"),
        ("SASL_SSL against a port without TLS", "JOURNEY_SECURITY_PROTOCOL"),
    ],
)
async def test_bad_credentials_end_in_one_line(
    secured_kafka: KafkaCluster, conformance: Any, case: str, said: str
) -> None:
    env, _ = await _deployment(secured_kafka, conformance.root / "fx.json", mtls=False)
    password = env["JOURNEY_SASL_PASSWORD"]
    started = time.monotonic()
    done = await asyncio.to_thread(journey, _case(secured_kafka, env, case), "topics", "check", timeout=60)
    took = time.monotonic() - started
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert lines[0].startswith("journey: error: ") and said in lines[0], lines
    assert password not in lines[0] and b"Traceback" not in done.stderr
    assert took < 30, took  # within the connect timeout, not after retries


async def test_a_worker_without_its_transactional_ids_acl_stops_in_one_line(
    secured_kafka: KafkaCluster, conformance: Any, tmp_path: Path
) -> None:
    # Every ACL journey needs but those of its transactional ids: exactly-once cannot run,
    # and the worker says so at start instead of running at least once, or timing out.
    env, _ = await _deployment(
        secured_kafka, conformance.root / "fx.json", mtls=False, without="transactional_id"
    )
    env["JOURNEY_DATA_DIR"] = str(tmp_path / "data")
    made = journey(env, "topics", "create")
    assert made.returncode == 0, made.stderr
    started = time.monotonic()
    done = journey(env, "worker", timeout=90)
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode != 0, done.stderr
    assert lines and "denies the transactional id" in lines[-1], lines[-5:]
    assert b"Traceback" not in done.stderr
    assert time.monotonic() - started < 60


def _https(url: str, ca: Path, *, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request with the cluster's CA trusted, redirects not followed."""

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    context = ssl.create_default_context(cafile=str(ca))
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), Stay)
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


async def test_the_worker_serves_https_and_its_cookie_is_secure(
    secured_kafka: KafkaCluster, conformance: Any, tmp_path: Path
) -> None:
    # The worker's own HTTP behind TLS (JOURNEY_WEB_TLS_CERT/KEY), so that the token does
    # not travel in clear text: here with the broker's certificate, which names 127.0.0.1.
    env, _ = await _deployment(secured_kafka, conformance.root / "fx.json", mtls=False)
    assert secured_kafka.secure is not None
    folder = secured_kafka.secure.folder
    port = free_port()
    token = "a-token-of-thirty-two-characters-at-least"
    env = {
        **env,
        "JOURNEY_WEB_TLS_CERT": str(folder / "broker.crt"),
        "JOURNEY_WEB_TLS_KEY": str(folder / "broker.key"),
        "JOURNEY_WEB_PORT": str(port),
        "JOURNEY_API_TOKEN": token,
        "JOURNEY_DATA_DIR": str(tmp_path / "data"),
    }
    assert journey(env, "topics", "create").returncode == 0
    log = (tmp_path / "worker.log").open("wb")
    command = [sys.executable, "-m", "cli", "worker"]
    worker = await asyncio.to_thread(subprocess.Popen, command, env=env, stdout=log, stderr=log)
    try:
        base, ca = f"https://127.0.0.1:{port}", secured_kafka.secure.ca_file
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _, _ = await asyncio.to_thread(_https, f"{base}/health", ca)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and worker.poll() is None, (
                    tmp_path / "worker.log"
                ).read_text()
                await asyncio.sleep(0.3)
        assert status == 200
        status, _, body = await asyncio.to_thread(_https, f"{base}/customers/c-1", ca)
        assert status == 401 and b"error" in body
        form = urllib.parse.urlencode({"token": token}).encode()
        status, headers, _ = await asyncio.to_thread(_https, f"{base}/signin", ca, data=form)
        cookie = headers.get("Set-Cookie", "")
        assert status == 303 and "Secure" in cookie and "HttpOnly" in cookie, (status, cookie)
        # Plain http to the same port gets no answer: there is none but https.
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{port}/health", None, 5)
    finally:
        worker.kill()
        worker.wait(10)
        log.close()
    assert token not in (tmp_path / "worker.log").read_text(errors="replace")
