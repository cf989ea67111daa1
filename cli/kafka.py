"""`journey kafka up`: Apache Kafka on this machine, as the test suite starts it."""

from __future__ import annotations

import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType

import click

from cli.common import user_errors

__all__ = ["kafka"]


@click.group()
def kafka() -> None:
    """Apache Kafka on this machine, from the jars `make kafka` fetched (needs java)."""


@kafka.command("up")
@click.option("--nodes", type=click.Choice(["1", "3"]), default="1", show_default=True,
              help="One combined broker and controller, or three (replication factor 3, min.insync.replicas 2).")  # fmt: skip
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="Where the nodes keep their data and logs (default: a new temporary folder).")  # fmt: skip
@click.option("--heap", default="384m", show_default=True, help="Each node's Java heap (-Xmx).")
@user_errors
def kafka_up(nodes: str, folder: Path | None, heap: str) -> None:
    """Start Apache Kafka in KRaft mode on free loopback ports and print JOURNEY_BROKER for
    it; Ctrl-C (or SIGTERM) stops every node (SIGTERM, then SIGKILL). For tests and trials:
    production runs its own cluster."""
    from stream.brokers.apache import KAFKA_VERSION, KafkaCluster  # noqa: PLC0415  # keep --help fast

    root = folder or Path(tempfile.mkdtemp(prefix="journey-kafka-"))
    cluster = KafkaCluster(root, int(nodes), heap=heap)
    click.echo(f"starting Apache Kafka {KAFKA_VERSION}: {nodes} node(s) in {root}", err=True)
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    cluster.start()
    try:
        click.echo(f"export JOURNEY_BROKER={cluster.url}")
        click.echo("then: journey topics create && journey worker   (Ctrl-C here stops Kafka)", err=True)
        while not stop.wait(1.0):
            down = [node.node_id for node in cluster.nodes if not node.running]
            if down:
                raise click.ClickException(f"Kafka node(s) {down} exited: see {root}/node-*/server.log")
    finally:
        cluster.stop()
        click.echo("Kafka stopped", err=True)
