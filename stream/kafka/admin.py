"""Creating and checking journey's topics on the broker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from stream.kafka.refusals import explain
from stream.kafka.topics import TopicNames

__all__ = ["TopicsError", "create_topics", "partition_counts", "verify_topics"]


class TopicsError(RuntimeError):
    """Topics are missing or not co-partitioned; the message names them."""


async def partition_counts(kafka: Mapping[str, Any], topics: Iterable[str]) -> dict[str, int]:
    """Partition count of each topic that exists (missing topics are left out)."""
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False)
    try:
        await consumer.start()
        await consumer._client.force_metadata_update()  # noqa: SLF001  # no public way to refresh
        counts = {}
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                counts[topic] = len(partitions)
        return counts
    finally:
        await consumer.stop()


async def create_topics(
    kafka: Mapping[str, Any], names: TopicNames, *, partitions: int, replication_factor: int
) -> list[str]:
    """Create every topic that is missing; return the names created.

    `ppp-updates` and the table changelogs are compacted: the latest message per key is
    the current value.
    """
    existing = await partition_counts(kafka, names.all)
    wanted = [
        NewTopic(
            name=topic,
            num_partitions=partitions,
            replication_factor=replication_factor,
            topic_configs={"cleanup.policy": "compact"} if topic in names.compacted else {},
        )
        for topic in names.all
        if topic not in existing
    ]
    if wanted:
        admin = AIOKafkaAdminClient(**kafka)
        await admin.start()
        try:
            for topic in wanted:
                # Another worker may win the race: what matters is that the topic exists.
                with contextlib.suppress(TopicAlreadyExistsError):
                    _raise_topic_errors(await admin.create_topics([topic]))
        finally:
            await admin.close()
    # Metadata for new topics spreads asynchronously, and each check may ask another broker:
    # on a fresh cluster of three busy nodes some took more than 30 s to show.
    await verify_topics(kafka, names, partitions=partitions, wait_s=60.0 if wanted else 0.0)
    return [t.name for t in wanted]


_TOPIC_ALREADY_EXISTS = 36


def _raise_topic_errors(response: Any) -> None:
    """aiokafka returns a refused creation as an error code in the answer, not an exception:
    a replication factor above the brokers that are up, say, must not pass for created."""
    for entry in getattr(response, "topic_errors", ()):
        name, code, *rest = entry
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            message = rest[0] if rest and rest[0] else f"error code {code}"
            raise TopicsError(f"cannot create topic {name}: {message}")


async def verify_topics(
    kafka: Mapping[str, Any], names: TopicNames, *, partitions: int | None = None, wait_s: float = 10.0
) -> int:
    """Check that the co-partitioned topics exist with one partition count; return it.

    A worker started on topics that disagree would hang or mis-route state, so it stops
    with this error instead. Missing topics are asked for again for up to `wait_s`: a
    broker's metadata can lag a topic just created elsewhere in the cluster.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            counts = await partition_counts(kafka, names.all)
        except KafkaError as exc:
            raise TopicsError(f"cannot read topic metadata: {explain(exc)}") from None
        missing = [t for t in names.all if t not in counts]
        if not missing or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)
    if missing:
        raise TopicsError(f"missing topics: {', '.join(missing)} (run `journey topics create`)")
    co = {t: counts[t] for t in names.co_partitioned}
    distinct = set(co.values())
    if len(distinct) > 1 or (partitions is not None and distinct != {partitions}):
        listing = ", ".join(f"{t}={n}" for t, n in co.items())
        expected = f"; expected {partitions} each" if partitions is not None else ""
        raise TopicsError(f"co-partitioned topics disagree on partition counts: {listing}{expected}")
    return distinct.pop()
