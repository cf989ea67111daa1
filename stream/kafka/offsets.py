"""True end offsets on brokers whose ListOffsets answer is short (Tansu; BROKER-NOTES.md).

Tansu answers ListOffsets(latest) with the base offset of the partition's last record batch
plus one, not the true end, when that batch holds several records. Faust recovers a table
from its changelog "up to the highwater" it gets from `end_offsets()`, so on Tansu it can stop
early and bring back stale values. The fetch response's high watermark is right, so
`end_offsets` is wrapped to ask a fetch from just before the reported end and take the larger
answer. On Apache Kafka both agree and the probe costs one small fetch per partition, at
recovery and lag refresh only.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.structs import TopicPartition

__all__ = ["fetch_highwaters", "install_end_offsets_probe", "stable_end_offsets"]

_PROBE_BYTES = 1  # the broker still returns at least one batch and, always, the high watermark
# Tansu answers a fetch with min_bytes=0 with no partitions at all; with min_bytes=1 at an
# offset that holds a record it answers at once, so the wait is only a bound.
_PROBE_WAIT_MS = 100
_installed = False
_reported = AIOKafkaConsumer.end_offsets  # aiokafka's own, before the probe wraps it


async def fetch_highwaters(
    consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """High watermarks from a fetch at `offsets[tp]` for each partition, grouped by leader."""
    client = consumer._client  # noqa: SLF001  # the probe needs a raw request on its connection
    by_node: dict[int, dict[str, list[tuple[int, int, int]]]] = defaultdict(lambda: defaultdict(list))
    for tp, offset in offsets.items():
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            continue
        by_node[leader][tp.topic].append((tp.partition, offset, _PROBE_BYTES))
    found: dict[TopicPartition, int] = {}
    for node, topics in by_node.items():
        request = FetchRequest(_PROBE_WAIT_MS, 1, _PROBE_BYTES, 0, list(topics.items()))
        response: Any = await client.send(node, request)
        for topic, partitions in response.topics:
            for partition, error_code, highwater, *_ in partitions:
                if error_code == 0:
                    found[TopicPartition(topic, partition)] = highwater
    return found


def install_end_offsets_probe() -> None:
    """Wrap `AIOKafkaConsumer.end_offsets` (process-wide, once) to return the true ends."""
    global _installed  # noqa: PLW0603  # a one-time patch of a library class
    if _installed:
        return
    reported_end_offsets = AIOKafkaConsumer.end_offsets

    async def end_offsets(self: AIOKafkaConsumer, partitions: Any) -> dict[TopicPartition, int]:
        reported: dict[TopicPartition, int] = await reported_end_offsets(self, partitions)
        probe = {tp: max(end - 1, 0) for tp, end in reported.items() if end > 0}
        if not probe:
            return reported
        highwaters = await fetch_highwaters(self, probe)
        return {tp: max(end, highwaters.get(tp, end)) for tp, end in reported.items()}

    AIOKafkaConsumer.end_offsets = end_offsets  # see the module docstring
    _installed = True


async def stable_end_offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The broker's own answer, without the probe: on Apache Kafka, for a `read_committed`
    consumer, the last stable offset. A worker reading topics it writes in transactions
    must stop there: its own open transaction holds the high watermark ahead until it
    commits, and the commit waits for the reader (a worker that waited so was fenced after
    the transaction timeout: the erasure test, CI)."""
    ends: dict[TopicPartition, int] = await _reported(consumer, partitions)
    return ends
