"""Exactly-once on Apache Kafka: a worker's outputs, its tables' changelog records and the
offsets of the inputs they came from commit in one Kafka transaction, or none of them do.

A worker has one transactional producer (`transactional.id` `<app>-<worker name>`). Batch
handlers send inside the open transaction. At every commit the consumer stops handing out
batches, waits until the last batch's sends are done (`BatchingConsumer`), adds the offsets
every handled batch reached (`send_offsets_to_transaction`), commits and opens the next
transaction. A worker killed in between leaves an open transaction that the broker aborts:
its inputs are read again from the committed offsets and their outputs sent again, and a
reader with `isolation_level=read_committed` (every consumer of a worker is one) never sees
the aborted copies. So a link, an impact change or an update is written once, even when a
broker and a worker die together on a cluster whose leaders differ.

Apache Kafka only: the embedded broker grants no producer ids (BROKER-NOTES.md), so "auto"
turns this on only where the idempotence probe succeeded and a transaction commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import CoordinatorNotAvailableError, KafkaError, TransactionalIdAuthorizationFailed
from aiokafka.structs import TopicPartition

from stream.kafka.connection import KafkaSetupError

__all__ = [
    "TRANSACTION_TIMEOUT_MS",
    "Transactions",
    "choose_exactly_once",
    "install_coordinator_retries",
    "install_read_committed",
]

# A transaction lives from one commit to the next (a fraction of a second), but a worker cut
# off from the brokers holds it open: past this, the broker aborts it, the worker's producer
# is fenced and the worker stops (its tables hold what was aborted). Kafka's default: a
# stall of a minute is survived. A killed worker's open transaction is aborted after this
# long too, unless a worker of the same name starts (`JOURNEY_WORKER_NAME`) and fences it.
TRANSACTION_TIMEOUT_MS = 60_000
_PROBE_TIMEOUT_S = 20.0


async def _broker_runs_transactions(kafka: Mapping[str, Any], probe_prefix: str) -> bool:
    transactional_id = f"{probe_prefix}{uuid.uuid4().hex}"
    producer = AIOKafkaProducer(
        **kafka,
        transactional_id=transactional_id,
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
    )
    try:
        await asyncio.wait_for(producer.start(), _PROBE_TIMEOUT_S)
        await asyncio.wait_for(producer.begin_transaction(), _PROBE_TIMEOUT_S)
        await asyncio.wait_for(producer.commit_transaction(), _PROBE_TIMEOUT_S)
    except TransactionalIdAuthorizationFailed:
        # A secured cluster that runs transactions but not for this user: silently at
        # least once would hide it (docs/secured.md).
        raise KafkaSetupError(
            f"the broker denies the transactional id {transactional_id!r}: grant WRITE and DESCRIBE "
            f"on transactional ids prefixed {probe_prefix.removesuffix('probe-')!r}, or set "
            "JOURNEY_EXACTLY_ONCE=off"
        ) from None
    except (KafkaError, TimeoutError):
        return False
    finally:
        await producer.stop()
    return True


async def choose_exactly_once(
    setting: str, idempotent: bool, kafka: Mapping[str, Any], *, probe_prefix: str = "journey-probe-"
) -> bool:
    """JOURNEY_EXACTLY_ONCE: "on", "off", or "auto" (on where the broker runs transactions).
    Transactions need the producer ids idempotence needs: without them, "auto" is off at once.
    The probe's transactional id starts with `probe_prefix`: the worker's own transactional
    ids' prefix, which a secured cluster's ACLs grant it."""
    if setting == "off":
        return False
    runs = idempotent and await _broker_runs_transactions(kafka, probe_prefix)
    if setting == "on" and not runs:
        raise KafkaSetupError(
            "JOURNEY_EXACTLY_ONCE=on, but the broker runs no transactions (the embedded broker "
            "cannot; JOURNEY_IDEMPOTENCE must not be off): use auto or off there"
        )
    return runs


_installed: set[str] = set()


def install_read_committed() -> None:
    """Every AIOKafkaConsumer created from now on in this process reads committed records only
    (Faust's, whose table recovery and standbys read the changelogs too, and journey's own)."""
    if "read_committed" in _installed:
        return
    _installed.add("read_committed")
    original = AIOKafkaConsumer.__init__

    def __init__(self: AIOKafkaConsumer, *topics: Any, **kwargs: Any) -> None:
        kwargs["isolation_level"] = "read_committed"
        original(self, *topics, **kwargs)

    AIOKafkaConsumer.__init__ = __init__


def install_coordinator_retries() -> None:
    """A transactional producer survives a cut connection while it looks up a coordinator.

    aiokafka 0.14's sender retries only some errors of a FindCoordinator request; any other,
    a connection closed in the middle among them, kills the producer for good ("Unexpected
    error during batch delivery"), and with it the worker (the cut-connection test, 1 run of 2
    on one core). Every retriable error now reads as "coordinator not available", which the
    sender retries after a metadata refresh, as Kafka's Java producer does. The consumer's
    lookups treat both alike already."""
    if "coordinator" in _installed:
        return
    _installed.add("coordinator")
    original = AIOKafkaClient.coordinator_lookup

    async def coordinator_lookup(self: AIOKafkaClient, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original(self, *args, **kwargs)
        except KafkaError as exc:
            if not exc.retriable or isinstance(exc, CoordinatorNotAvailableError):
                raise
            raise CoordinatorNotAvailableError(repr(exc)) from exc

    AIOKafkaClient.coordinator_lookup = coordinator_lookup


class Transactions:
    """The open transaction of a worker's producer: sends happen under `lock`, and `commit`
    ends the transaction with the offsets its inputs reached and opens the next one."""

    def __init__(self, producer: Callable[[], AIOKafkaProducer], group_id: str) -> None:
        self._producer = producer
        self.group_id = group_id
        self.lock = asyncio.Lock()
        self.commits = 0

    async def open(self) -> None:
        """Begin a transaction unless one is open (the first send of a worker's life)."""
        producer = self._producer()
        if not producer._txn_manager.is_in_transaction():  # noqa: SLF001  # no public view
            await producer.begin_transaction()

    @contextlib.asynccontextmanager
    async def sending(self) -> AsyncIterator[None]:
        """Inside the open transaction, with no commit in the middle."""
        async with self.lock:
            await self.open()
            yield

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Called with `lock` held and every send of the transaction done: the offsets (the
        next to read, per partition) join the transaction, which commits; the next opens."""
        producer = self._producer()
        await self.open()
        if offsets:
            await producer.send_offsets_to_transaction(dict(offsets), self.group_id)
        await producer.commit_transaction()
        self.commits += 1
        await producer.begin_transaction()
