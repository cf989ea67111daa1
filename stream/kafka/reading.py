"""Reading a topic from the outside, as a downstream consumer does (no consumer group)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from stream.kafka.offsets import install_end_offsets_probe, stable_end_offsets

__all__ = ["TopicMissing", "assign_whole", "read_partitions", "read_topic"]


class TopicMissing(LookupError):
    """The topic does not exist on the broker."""


async def assign_whole(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Assign every partition of `topic` to a started consumer (no group); TopicMissing if
    the broker does not know it."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()  # noqa: SLF001  # no public refresh
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise TopicMissing(topic)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    return tps


async def read_topic(
    kafka: Mapping[str, Any], topic: str, *, from_beginning: bool, follow: bool
) -> AsyncGenerator[Any, None]:
    """Records of every partition of `topic`; without `follow`, stop at the current end.
    Committed ones only: workers on Apache Kafka write in transactions, and the records of
    an aborted one are not journey's output (the embedded broker has none to hide)."""
    install_end_offsets_probe()  # "the current end" must be the true one on the embedded broker
    consumer = AIOKafkaConsumer(**{"isolation_level": "read_committed", **kafka}, enable_auto_commit=False)
    try:
        await consumer.start()
        tps = await assign_whole(consumer, topic)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        ends = await consumer.end_offsets(tps)
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    yield record
            if not follow:
                positions = [await consumer.position(tp) for tp in tps]
                if all(position >= ends[tp] for position, tp in zip(positions, tps, strict=True)):
                    return
    finally:
        await consumer.stop()


async def read_partitions(
    kafka: Mapping[str, Any], topics: list[str], partition: int, *, stable: bool = False
) -> AsyncGenerator[Any, None]:
    """Records of `partition` of each of `topics`, from the beginning to the end they have
    now (no consumer group): what a worker re-reads to rebuild one customer. `stable`: to
    the last stable offset (`stream.kafka.offsets.stable_end_offsets`), for a worker in transactions."""
    install_end_offsets_probe()
    consumer = AIOKafkaConsumer(**{"isolation_level": "read_committed", **kafka}, enable_auto_commit=False)
    try:
        await consumer.start()
        tps = [TopicPartition(topic, partition) for topic in topics]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await (stable_end_offsets(consumer, tps) if stable else consumer.end_offsets(tps))
        remaining = {tp for tp in tps if ends[tp] > 0}
        for tp in tps:
            if tp not in remaining:
                consumer.pause(tp)
        while remaining:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
    finally:
        await consumer.stop()
