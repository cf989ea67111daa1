"""`journey kafka up`: Apache Kafka on this machine, as the test suite starts it."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from cli.common import load_settings, user_errors

if TYPE_CHECKING:  # the CLI imports Kafka's launcher only when it runs (--help stays fast)
    from stream.brokers.apache import KafkaCluster

__all__ = ["kafka", "secured_settings"]


@click.group()
def kafka() -> None:
    """Apache Kafka on this machine, from the jars `make kafka` fetched (needs java)."""


@kafka.command("up")
@click.option("--nodes", type=click.Choice(["1", "3"]), default="1", show_default=True,
              help="One combined broker and controller, or three (replication factor 3, min.insync.replicas 2).")  # fmt: skip
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="Where the nodes keep their data and logs (default: a new temporary folder).")  # fmt: skip
@click.option("--heap", default="384m", show_default=True, help="Each node's Java heap (-Xmx).")
@click.option("--secure", is_flag=True,
              help="SASL_SSL (SCRAM-SHA-512) and mutual-TLS listeners, ACLs, and a `journey` user with only "
                   "the ACLs journey needs; prints its settings.")  # fmt: skip
@click.option("--mtls", is_flag=True, help="With --secure: print the settings of the mutual-TLS listener.")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the printed settings to this file (mode 600), for another shell to `source`.")  # fmt: skip
@user_errors
def kafka_up(
    nodes: str, folder: Path | None, heap: str, secure: bool, mtls: bool, env_file: Path | None
) -> None:
    """Start Apache Kafka in KRaft mode on free loopback ports and print JOURNEY_BROKER for
    it (`eval` the output); Ctrl-C (or SIGTERM) stops every node (SIGTERM, then SIGKILL).
    For tests and trials: production runs its own cluster."""
    from stream.brokers.apache import KAFKA_VERSION, KafkaCluster  # noqa: PLC0415  # keep --help fast

    if mtls and not secure:
        raise click.UsageError("--mtls goes with --secure")
    root = folder or Path(tempfile.mkdtemp(prefix="journey-kafka-"))
    cluster = KafkaCluster(root, int(nodes), heap=heap, secure=secure)
    click.echo(f"starting Apache Kafka {KAFKA_VERSION}: {nodes} node(s) in {root}", err=True)
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    cluster.start()
    try:
        if cluster.secure is None:
            lines = [f"export JOURNEY_BROKER={cluster.url}"]
        else:
            import asyncio  # noqa: PLC0415

            from stream.brokers.secure import grant, journey_acls  # noqa: PLC0415

            # The `journey` user gets the ACLs of the deployment JOURNEY_TOPIC_PREFIX names.
            settings = load_settings()
            acls = journey_acls(settings.topic_prefix, settings.app_id)
            asyncio.run(grant(cluster.admin_options(), "User:journey", acls))
            lines = secured_settings(cluster, settings.topic_prefix, mtls=mtls)
        if env_file is not None:
            # It may hold a password: readable by its owner only, from the start.
            env_file.unlink(missing_ok=True)
            with os.fdopen(os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
                out.write("\n".join(lines) + "\n")
        for line in lines:
            click.echo(line)
        where = f"source {env_file}, " if env_file else ""
        click.echo(
            f"then: {where}journey topics create && journey worker   (Ctrl-C here stops Kafka)", err=True
        )
        while not stop.wait(1.0):
            down = [node.node_id for node in cluster.nodes if not node.running]
            if down:
                raise click.ClickException(f"Kafka node(s) {down} exited: see {root}/node-*/server.log")
    finally:
        cluster.stop()
        click.echo("Kafka stopped", err=True)


def secured_settings(cluster: KafkaCluster, prefix: str, *, mtls: bool) -> list[str]:
    """The `export` lines of the `journey` user's settings: SASL_SSL, or the mutual-TLS
    listener with `mtls`. The password is printed here, for the shell that starts journey,
    and nowhere else."""
    import shlex  # noqa: PLC0415

    secure = cluster.secure
    assert secure is not None, "a cluster started with secure=True"
    common = {"JOURNEY_SSL_CA_FILE": str(secure.ca_file)}
    if mtls:
        found = {
            "JOURNEY_BROKER": "kafka://" + ",".join(cluster.mtls_bootstrap),
            "JOURNEY_SECURITY_PROTOCOL": "SSL",
            "JOURNEY_SSL_CERT_FILE": str(secure.client_cert()),
            "JOURNEY_SSL_KEY_FILE": str(secure.client_key()),
        }
    else:
        found = {
            "JOURNEY_BROKER": cluster.url,
            "JOURNEY_SECURITY_PROTOCOL": "SASL_SSL",
            "JOURNEY_SASL_MECHANISM": "SCRAM-SHA-512",
            "JOURNEY_SASL_USERNAME": "journey",
            "JOURNEY_SASL_PASSWORD": secure.journey_password,
        }
    if prefix:
        common["JOURNEY_TOPIC_PREFIX"] = prefix
    return [f"export {name}={shlex.quote(value)}" for name, value in {**found, **common}.items()]
