"""What a secured local Apache Kafka needs: a small certificate authority, the broker's and
the clients' certificates (made with the `openssl` command), SCRAM users, and ACLs.

The launcher (`stream.brokers.apache.KafkaCluster(secure=True)`) gives each node a SASL_SSL
listener (SCRAM-SHA-512) and a mutual-TLS listener for clients, and the standard
authorizer with `admin` as super user; `journey` is a user with only the ACLs journey's
processes need (`journey_acls`). For tests and trials on one machine: the nodes talk to
each other and to their controller on loopback listeners without TLS, whose principal is
a super user too.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest

from stream.brokers.embedded import BrokerError
from stream.kafka.topics import TopicNames

__all__ = ["Acl", "SecureSetup", "grant", "journey_acls", "make_secure_setup"]

# Kafka's codes (org.apache.kafka.common.resource / acl): resource types, pattern types,
# operations and permissions, as the CreateAcls request carries them.
_RESOURCES = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
_PATTERNS = {"literal": 3, "prefixed": 4}
_OPERATIONS = {
    "read": 3,
    "write": 4,
    "create": 5,
    "describe": 8,
    "idempotent_write": 12,
}
_ALLOW = 3


@dataclass(frozen=True, slots=True)
class Acl:
    """One ACL of a principal: `operation` on the resource `kind`/`name` (`pattern`:
    literal, or every name that starts with it)."""

    kind: str
    name: str
    pattern: str
    operation: str

    def __str__(self) -> str:
        return f"{self.operation.upper()} on {self.kind} {self.name!r} ({self.pattern})"


def journey_acls(prefix: str, app_id: str = "journey") -> list[Acl]:
    """The least the deployment of `prefix` and `app_id` needs of the cluster: its topics
    by name (read, write, create, describe), the consumer group of its workers
    (`<prefix><app_id>`), the transactional ids of its workers (`<prefix><app_id>-<worker
    name>`), and idempotent writes. `publish`, `tail` and `forget` need a part of these
    (docs/secured.md)."""
    topics = TopicNames(prefix, app_id).all
    app = f"{prefix}{app_id}"
    operations = ("read", "write", "create", "describe")
    return [
        *(Acl("topic", topic, "literal", op) for topic in topics for op in operations),
        Acl("group", app, "literal", "read"),
        Acl("group", app, "literal", "describe"),
        Acl("transactional_id", f"{app}-", "prefixed", "write"),
        Acl("transactional_id", f"{app}-", "prefixed", "describe"),
        Acl("cluster", "kafka-cluster", "literal", "idempotent_write"),
    ]


async def grant(kafka: Mapping[str, Any], principal: str, acls: Iterable[Acl]) -> None:
    """Create `acls` for `principal` (`User:journey`), as a super user's `kafka` options."""
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    try:
        client = admin._client  # noqa: SLF001  # aiokafka's admin has no call for ACLs
        for acl in acls:
            request = CreateAclsRequest(
                _RESOURCES[acl.kind],
                acl.name,
                _PATTERNS[acl.pattern],
                principal,
                "*",
                _OPERATIONS[acl.operation],
                _ALLOW,
            )
            response = await client.send(client.get_random_node(), request)
            for code, message in response.creation_responses:
                if code:
                    raise BrokerError(f"creating the ACL {acl} for {principal} failed: {message or code}")
    finally:
        await admin.close()


@dataclass(frozen=True, slots=True)
class SecureSetup:
    """The files and users of a secured local cluster."""

    folder: Path
    admin_password: str
    journey_password: str

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def broker_keystore(self) -> Path:
        """The broker's private key and certificate chain in one PEM file (Kafka's PEM keystore)."""
        return self.folder / "broker-keystore.pem"

    def client_cert(self, who: str = "journey") -> Path:
        return self.folder / f"{who}.crt"

    def client_key(self, who: str = "journey") -> Path:
        return self.folder / f"{who}.key"

    @property
    def scram_users(self) -> dict[str, str]:
        return {"admin": self.admin_password, "journey": self.journey_password}


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, check=False)  # noqa: S603, S607
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise BrokerError(f"openssl {args[0]} failed: {reason[-1] if reason else '?'}")


def _authority(folder: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}",
        cwd=folder,
    )  # fmt: skip


def _signed(folder: Path, name: str, authority: str, extensions: str) -> None:
    """A key and a certificate `name.crt` with CN=`name`, signed by `authority`."""
    (folder / f"{name}.ext").write_text(extensions + "\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
        "-subj", f"/CN={name}",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{authority}.pem", "-CAkey", f"{authority}.key",
        "-CAcreateserial", "-days", "3650", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
        cwd=folder,
    )  # fmt: skip


def make_secure_setup(folder: Path) -> SecureSetup:
    """A certificate authority (`ca.pem`), the broker's keystore (for 127.0.0.1 and
    localhost), a client certificate for `journey` (CN=journey, which the brokers map to
    User:journey), and one for `stranger` from another authority the brokers do not
    trust; random passwords for the SCRAM users `admin` and `journey`."""
    folder.mkdir(parents=True, exist_ok=True)
    _authority(folder, "ca")
    _authority(folder, "other-ca")
    _signed(folder, "broker", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    _signed(folder, "journey", "ca", "extendedKeyUsage=clientAuth")
    _signed(folder, "stranger", "other-ca", "extendedKeyUsage=clientAuth")
    keystore = (folder / "broker.key").read_text() + (folder / "broker.crt").read_text()
    (folder / "broker-keystore.pem").write_text(keystore)
    for key in folder.glob("*.key"):
        key.chmod(0o600)
    return SecureSetup(folder, secrets.token_urlsafe(18), secrets.token_urlsafe(18))
