"""What one input batch sends, grouped by partition and handed to the producer as record batches.

aiokafka's `send` costs a future, a loop lookup and an accumulator walk per message: a
seventh of a busy worker's time went there (py-spy). A record batch per partition
(`create_batch`/`send_batch`) costs one of each per partition, and the records inside are
the same: same keys, same partitions as Kafka's default partitioner would pick (murmur2 of
the key), same headers.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

__all__ = [
    "Outbox",
    "PlacedRecords",
    "after",
    "default_partition",
    "delivered",
    "estimate",
    "fresh_batches",
    "led_by_one",
    "send_together",
    "tables_last",
]

_Headers = list[tuple[str, bytes]]
# (topic, partition, key, value): records placed on their partitions, to add together
# (`Outbox.fits`), as a share join's records and the links it makes are.
PlacedRecords = list[tuple[str, int, bytes, bytes | None]]


# murmur2 is pure Python in aiokafka (a few microseconds a key); every input event and every
# update asks for its customer's partition, and customers come back.
@functools.lru_cache(maxsize=65_536)
def default_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2 of the key) gives `key`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Outbox:
    """Messages to send together; `send()` queues them on `producer` in the order added,
    per partition."""

    def __init__(self, producer: AIOKafkaProducer, partition_counts: dict[str, int]) -> None:
        self.producer = producer
        # Shared between outboxes: a topic's partition count, asked of the metadata once.
        self._counts = partition_counts
        self._messages: dict[tuple[str, int | None], list[tuple[bytes | None, bytes | None, _Headers]]] = {}
        # Estimated bytes per (topic, partition) of what was added with a partition (`fits`).
        self._bytes: dict[tuple[str, int | None], int] = {}
        # The most of them on any one partition (`largest`), kept as they grow: asked once
        # per customer stored, where a max over every partition cost 1% of a worker.
        self._largest = 0

    def sibling(self) -> Outbox:
        """An empty outbox on the same producer, sharing the partition counts."""
        return Outbox(self.producer, self._counts)

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: _Headers | None = None,
    ) -> None:
        self._messages.setdefault((topic, partition), []).append((key, value, headers or []))
        self._count(topic, partition, estimate(key, value))

    async def send(self) -> list[Awaitable[Any]]:
        """Queue everything; returns the deliveries (each done when the broker acked it)."""
        deliveries: list[Awaitable[Any]] = []
        by_partition: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, _Headers]]] = {}
        for (topic, partition), messages in self._messages.items():
            if partition is not None:
                by_partition.setdefault((topic, partition), []).extend(messages)
                continue
            count = await self.partition_count(topic)
            for message in messages:
                key = message[0]
                chosen = random.randrange(count) if key is None else await self.partition_for(topic, key)
                by_partition.setdefault((topic, chosen), []).append(message)
        self._messages.clear()
        self._bytes.clear()
        self._largest = 0
        for (topic, partition), messages in by_partition.items():
            batch = self.producer.create_batch()
            for key, value, headers in messages:
                if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    deliveries.append(await self.producer.send_batch(batch, topic, partition=partition))
                    batch = self.producer.create_batch()
                    # An empty batch takes any one record, however large.
                    batch.append(timestamp=None, key=key, value=value, headers=headers)
            deliveries.append(await self.producer.send_batch(batch, topic, partition=partition))
        return deliveries

    def reserve(self, topic: str, partition: int, size: int) -> None:
        """Count `size` bytes against a partition for `fits`, for a record added later."""
        self._count(topic, partition, size)

    def _count(self, topic: str, partition: int | None, size: int) -> None:
        total = self._bytes[(topic, partition)] = self._bytes.get((topic, partition), 0) + size
        if total > self._largest:
            self._largest = total

    def has_room(
        self, topic: str, partition: int, key: bytes | None, value: bytes | None, limit: int
    ) -> bool:
        """`fits` for one record, in a fraction of its time (it is asked once per customer)."""
        return self.room_for(topic, partition, estimate(key, value), limit)

    def room_for(self, topic: str, partition: int, size: int, limit: int) -> bool:
        """`has_room` for records of `size` bytes in all (see `estimate`)."""
        return not self._messages or self._bytes.get((topic, partition), 0) + size <= limit

    def largest(self) -> int:
        """The most bytes counted against any one partition (see `fits`)."""
        return self._largest

    def fits(self, records: Sequence[tuple[str, int, bytes | None, bytes | None]], limit: int) -> bool:
        """Whether `records` (topic, partition, key, value) can be added without any
        partition's records exceeding `limit` bytes (an estimate with room for the record
        framing), so that each partition's records stay one record batch. An empty outbox
        takes anything: a record batch takes any one record, however large."""
        if not self._messages:
            return True
        added: dict[tuple[str, int], int] = {}
        for topic, partition, key, value in records:
            added[(topic, partition)] = added.get((topic, partition), 0) + estimate(key, value)
        return all(self._bytes.get(tp, 0) + size <= limit for tp, size in added.items())

    async def partition_for(self, topic: str, key: bytes) -> int:
        """The partition Kafka's default partitioner gives `key` in `topic`."""
        return default_partition(key, await self.partition_count(topic))

    def partitions(self) -> set[tuple[str, int]]:
        """The partitions of what was added with a partition."""
        return {(topic, partition) for topic, partition in self._messages if partition is not None}

    async def partition_count(self, topic: str) -> int:
        count = self._counts.get(topic)
        if count is None:
            partitions = await self.producer.client._wait_on_metadata(topic)  # noqa: SLF001  # no public wait
            count = self._counts[topic] = len(partitions)
        return count


def estimate(key: bytes | None, value: bytes | None) -> int:
    """A record's size in a batch: key and value plus its framing (length, attributes,
    deltas, header count)."""
    return len(key or b"") + len(value or b"") + 32


async def send_together(outbox: Outbox) -> list[Awaitable[Any]]:
    """Queue `outbox` (every message with its partition, each partition's within one record
    batch: see `Outbox.fits`) so that all of it leaves in one produce request.

    Its partitions' earlier batches are first handed to the sender; then its batches are
    fresh, which the producer takes without waiting, queued back to back with no pause
    (metadata known) and ready at once (`linger_ms=0`), so the sender drains them
    together. Only for partitions that nothing else writes to meanwhile.
    """
    await fresh_batches(outbox.producer, sorted(outbox.partitions()))
    return await outbox.send()


async def fresh_batches(producer: AIOKafkaProducer, partitions: list[tuple[str, int]]) -> None:
    """Wait until none of `partitions` has a batch waiting in the producer (each handed to
    the sender), so that the next record for each opens a fresh batch, which takes it at
    once. Meant for partitions only the caller writes to; reads aiokafka's accumulator,
    which has no public view of it."""
    batches = producer._message_accumulator._batches  # noqa: SLF001
    for topic, partition in partitions:
        tp = TopicPartition(topic, partition)
        while pending := batches.get(tp):
            await pending[-1].wait_drain()


async def delivered(deliveries: list[Awaitable[Any]]) -> None:
    """Wait until the broker has acknowledged all of `deliveries`."""
    if deliveries:
        await asyncio.gather(*deliveries)


async def led_by_one(outbox: Outbox, *topics: str) -> bool:
    """Whether one broker leads every partition of `topics`: then what `send_together`
    queues for them leaves in one produce request."""
    cluster = outbox.producer.client.cluster
    leaders = set()
    for topic in topics:
        for partition in range(await outbox.partition_count(topic)):
            leaders.add(cluster.leader_for_partition(TopicPartition(topic, partition)))
    return len(leaders) == 1 and None not in leaders and -1 not in leaders


async def tables_last(outbox: Outbox, changelog: str, *outputs: str) -> Outbox | None:
    """Where a table's changelog records go relative to what they caused (`outputs`).

    Where one broker leads every partition of them all, a record and its outputs leave
    in one produce request (None: add the records to the chunk). Else they would be
    several requests, and a worker killed between them kept a join's record but lost
    its links (6 referral keys missing after a broker and a worker were SIGKILLed
    together on the three-node cluster): the records wait in the Outbox returned, sent
    once the outputs are acknowledged (`after`). A crash between the two then sends
    the outputs again on redelivery, and loses none (docs/kafka.md, "Tested on Apache Kafka")."""
    if await led_by_one(outbox, changelog, *outputs):
        return None
    return outbox.sibling()


def after(
    deliveries: list[Awaitable[Any]], previous: asyncio.Future[None] | None, tables: Outbox | None = None
) -> asyncio.Future[None]:
    """Done when `deliveries` are acknowledged and the previous batch's completion is done:
    a handler's batches complete in the order they came (see `BatchHandler`). Then
    `tables` (changelog records held back, see `tables_last`) are sent and
    acknowledged too."""

    async def complete() -> None:
        await delivered(deliveries)
        if previous is not None:
            await previous
        if tables is not None:
            await delivered(await tables.send())

    return asyncio.ensure_future(complete())
