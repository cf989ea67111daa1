"""Apache Kafka on this machine: KRaft nodes started with `java` from the broker's jars.

The jars come from Maven Central through `deploy/kafka/pom.xml` (`make kafka` copies them
into `.cache/kafka/<version>/`); nothing of Kafka is committed. The tests start one
single-node broker and one three-node cluster per session with this launcher, and
`journey kafka up` starts either for a person. Every node is a combined broker and
controller on loopback, with a small heap for a 2-core machine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from stream.brokers.embedded import BrokerError, Running, free_port, wait_for_port
from stream.brokers.secure import SecureSetup, make_secure_setup

__all__ = ["KAFKA_VERSION", "KafkaCluster", "KafkaNode", "jar_dir"]

# The version the suite tests, and docker-compose.yml and deploy/k8s name (a test holds
# the four to one another).
KAFKA_VERSION = "4.1.1"
_ROOT = Path(__file__).resolve().parents[2]
# Enough for the suite's topics on 2 cores: the broker's page cache does the rest.
DEFAULT_HEAP = "384m"

_LOG4J = """\
rootLogger.level=INFO
rootLogger.appenderRef.out.ref=OUT
appender.out.type=Console
appender.out.name=OUT
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
logger.apache.name=org.apache
logger.apache.level=WARN
logger.state.name=state.change.logger
logger.state.level=WARN
"""


def jar_dir(version: str = KAFKA_VERSION) -> Path:
    """Where the broker's jars are: `JOURNEY_KAFKA_JARS`, or the checkout's cache."""
    configured = os.environ.get("JOURNEY_KAFKA_JARS")
    return Path(configured) if configured else _ROOT / ".cache" / "kafka" / version


def _classpath(version: str) -> str:
    jars = jar_dir(version)
    if not any(jars.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"no Kafka {version} jars in {jars}: run `make kafka` (Maven fetches them)")
    return str(jars / "*")


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("Apache Kafka needs java (OpenJDK 17 or later) on the PATH")
    return java


def _run_now(function: Callable[[list[str]], Coroutine[Any, Any, int]], bootstrap: list[str]) -> int:
    """Run a coroutine to its end from sync code, also inside a running event loop (the
    benchmark starts its broker from one): then on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(function(bootstrap))
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, function(bootstrap)).result()


async def _brokers_in_metadata(bootstrap: list[str]) -> int:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await client.bootstrap()
        await client.force_metadata_update()
        return len(client.cluster.brokers())
    except KafkaError:
        return 0
    finally:
        await client.close()


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, never starting
    with `-` (the storage tool would read it as an option: it failed one suite run in two)."""
    while True:
        made = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not made.startswith("-"):
            return made


@dataclass
class KafkaNode:
    """One combined broker and controller: its ports, folder and process."""

    node_id: int
    folder: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    # The address clients of the PLAINTEXT listener are told to use (a proxy in front of the
    # broker, for instance). With one, the node also listens on `direct_port` (advertised as
    # itself) for the other brokers and for clients that must not go through the proxy.
    advertised_port: int | None = None
    direct_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # A secured node (`stream.brokers.secure`): `port` is then its SASL_SSL listener,
    # `mtls_port` its mutual-TLS one, and `direct_port` the nodes' own listener.
    secure: SecureSetup | None = None
    mtls_port: int = field(default_factory=free_port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.advertised_port or self.port}"

    @property
    def direct_address(self) -> str:
        return f"127.0.0.1:{self.direct_port}" if self.advertised_port or self.secure else self.address

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _secured(self) -> list[str]:
        """A secured node's listeners, TLS, SCRAM and authorizer (`stream.brokers.secure`)."""
        assert self.secure is not None
        direct, mtls = f"127.0.0.1:{self.direct_port}", f"127.0.0.1:{self.mtls_port}"
        return [
            f"listeners=SASL_SSL://{self.address},SSL://{mtls},DIRECT://{direct},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=SASL_SSL://{self.address},SSL://{mtls},DIRECT://{direct}",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,DIRECT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=DIRECT",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.secure.broker_keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.secure.ca_file}",
            "listener.name.ssl.ssl.client.auth=required",
            # A client certificate's CN is its user: CN=journey is User:journey.
            "ssl.principal.mapping.rules=RULE:^CN=([a-zA-Z0-9._-]+)$/$1/,DEFAULT",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # The nodes' own loopback listeners (DIRECT, CONTROLLER) speak as ANONYMOUS.
            "super.users=User:admin;User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
        ]

    def properties(self, voters: str, replicas: int) -> str:
        # With fewer than three nodes everything has one replica; with three, every topic
        # (journey's and Kafka's own) has three and a write needs two in sync.
        in_sync = 2 if replicas >= 3 else 1
        listeners = f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
        advertised = f"PLAINTEXT://{self.address}"
        between = "PLAINTEXT"
        if self.advertised_port:
            listeners += f",DIRECT://127.0.0.1:{self.direct_port}"
            advertised += f",DIRECT://{self.direct_address}"
            between = "DIRECT"
        listening = [
            f"listeners={listeners}",
            f"advertised.listeners={advertised}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,DIRECT:PLAINTEXT",
            f"inter.broker.listener.name={between}",
        ]
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={self.node_id}",
                f"controller.quorum.voters={voters}",
                "controller.listener.names=CONTROLLER",
                *(self._secured() if self.secure else listening),
                f"log.dirs={self.folder / 'data'}",
                f"default.replication.factor={replicas}",
                f"min.insync.replicas={in_sync}",
                f"offsets.topic.replication.factor={replicas}",
                "offsets.topic.num.partitions=8",
                f"transaction.state.log.replication.factor={replicas}",
                f"transaction.state.log.min.isr={in_sync}",
                "transaction.state.log.num.partitions=8",
                # A killed worker's open transaction is aborted within a second of its
                # timeout (default: ten), so readers wait for it that much less.
                "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000",
                f"share.coordinator.state.topic.replication.factor={replicas}",
                f"share.coordinator.state.topic.min.isr={in_sync}",
                "group.initial.rebalance.delay.ms=0",
                # Threads for a 2-core machine that also runs the workers (defaults: 3, 8, 10).
                "num.network.threads=2",
                "num.io.threads=2",
                "background.threads=2",
                # A killed node's partitions move to the others quickly.
                "broker.session.timeout.ms=6000",
                "broker.heartbeat.interval.ms=1000",
                "",
            ]
        )


class KafkaCluster(Running):
    """`size` KRaft nodes (1 or 3) under `root`, formatted and started by `start()`, stopped
    (SIGTERM, then SIGKILL) by `stop()`; any node can be killed and started again."""

    def __init__(
        self,
        root: Path,
        size: int = 1,
        *,
        version: str = KAFKA_VERSION,
        heap: str = DEFAULT_HEAP,
        advertised_ports: dict[int, int] | None = None,
        secure: bool = False,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self.root = root
        self.version = version
        self.heap = heap
        # SASL_SSL, mutual TLS and ACLs (`stream.brokers.secure`): certificates and users.
        self.secure = make_secure_setup(root / "secure") if secure else None
        self.nodes = [
            KafkaNode(
                index + 1,
                root / f"node-{index + 1}",
                advertised_port=(advertised_ports or {}).get(index + 1),
                secure=self.secure,
            )
            for index in range(size)
        ]
        self._formatted = False

    @property
    def bootstrap(self) -> list[str]:
        return [node.address for node in self.nodes]

    @property
    def url(self) -> str:
        """`JOURNEY_BROKER` for this cluster."""
        return "kafka://" + ",".join(self.bootstrap)

    @property
    def direct_bootstrap(self) -> list[str]:
        """The brokers themselves, not a proxy the PLAINTEXT listener advertises."""
        return [node.direct_address for node in self.nodes]

    @property
    def port(self) -> int:
        """The first node's broker port (one node: the broker's, as EmbeddedBroker.port)."""
        return self.nodes[0].port

    @property
    def pid(self) -> int | None:
        """The first node's process id while it runs (the benchmark reads its CPU time)."""
        process = self.nodes[0].process
        return process.pid if process is not None and process.poll() is None else None

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def _scram_users(self) -> list[str]:
        """The storage tool's arguments that create the SCRAM users of a secured cluster."""
        if self.secure is None:
            return []
        return [
            argument
            for name, password in self.secure.scram_users.items()
            for argument in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")
        ]

    def admin_options(self) -> dict[str, Any]:
        """aiokafka's options for the super user `admin` of a secured cluster (SASL_SSL)."""
        assert self.secure is not None
        return {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "ssl_context": ssl.create_default_context(cafile=str(self.secure.ca_file)),
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "admin",
            "sasl_plain_password": self.secure.admin_password,
        }

    @property
    def mtls_bootstrap(self) -> list[str]:
        """The mutual-TLS listeners of a secured cluster."""
        return [f"127.0.0.1:{node.mtls_port}" for node in self.nodes]

    def _format(self) -> None:
        classpath = _classpath(self.version)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        cluster_id = _cluster_id()
        for node in self.nodes:
            node.folder.mkdir(parents=True, exist_ok=True)
            (node.folder / "server.properties").write_text(node.properties(voters, len(self.nodes)))
            (node.folder / "log4j2.properties").write_text(_LOG4J)
            formatted = subprocess.run(  # noqa: S603  # fixed argv, no shell
                [
                    _java(),
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(node.folder / "server.properties"),
                    *self._scram_users(),
                ],
                capture_output=True,
                check=False,
            )
            if formatted.returncode != 0:
                reason = (formatted.stderr or formatted.stdout).decode(errors="replace").strip().splitlines()
                raise BrokerError(
                    f"formatting Kafka node {node.node_id} failed: {reason[-1] if reason else '?'}"
                )
        self._formatted = True

    def start_node(self, node: KafkaNode) -> None:
        """Start one node's process (its storage is kept: a restart after a kill)."""
        if node.running:
            return
        classpath = _classpath(self.version)
        with node.log_path.open("ab") as log:
            node.process = subprocess.Popen(  # noqa: S603  # fixed argv, no shell
                [
                    _java(),
                    f"-Xmx{self.heap}",
                    "-Xms64m",
                    "-XX:+UseG1GC",
                    "-XX:MaxGCPauseMillis=20",
                    "-Djava.awt.headless=true",
                    f"-Dlog4j2.configurationFile={node.folder / 'log4j2.properties'}",
                    "-cp",
                    classpath,
                    "kafka.Kafka",
                    str(node.folder / "server.properties"),
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us; we stop the nodes in order
            )

    def start(self, timeout: float = 60.0) -> None:
        """Format (the first time) and start every node; wait until each broker listens and
        every broker is in the cluster's metadata (a topic of replication factor 3 is refused
        until all three have registered)."""
        if not self._formatted:
            self._format()
        for node in self.nodes:
            self.start_node(node)
        self.wait_listening(timeout)
        self.wait_registered(timeout)

    def wait_registered(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            seen = _run_now(_brokers_in_metadata, self.direct_bootstrap)
            if seen >= len(self.nodes):
                return
            time.sleep(0.3)
        raise BrokerError(f"only {seen} of {len(self.nodes)} Kafka brokers registered within {timeout:.0f}s")

    def wait_listening(self, timeout: float = 60.0, nodes: list[KafkaNode] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for node in nodes or self.nodes:
            while not wait_for_port("127.0.0.1", node.port, 0.2):
                code = node.process.poll() if node.process else None
                if code is not None or time.monotonic() > deadline:
                    tail = (
                        node.log_path.read_text(errors="replace").splitlines()[-3:]
                        if node.log_path.exists()
                        else []
                    )
                    raise BrokerError(
                        f"Kafka node {node.node_id} did not listen on {node.port} within {timeout:.0f}s"
                        + (f" (exited with {code})" if code is not None else "")
                        + (f": {tail[-1]}" if tail else "")
                    )

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a machine failure would."""
        node = self.node(node_id)
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(10)

    def restart(self, node_id: int, timeout: float = 60.0) -> None:
        node = self.node(node_id)
        self.start_node(node)
        self.wait_listening(timeout, [node])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to every node (a controlled shutdown), then SIGKILL what is left."""
        for node in self.nodes:
            if node.running:
                assert node.process is not None
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.process is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(max(0.1, deadline - time.monotonic()))
            if node.process.poll() is None:
                node.process.kill()
                node.process.wait()
