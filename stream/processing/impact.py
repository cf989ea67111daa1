"""The impact entries' owners: each adds up the changes of its entries
(`journey.impact.apply_change`) and publishes the entries that changed on `impact`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import faust
import orjson
from faust.types import TP

from journey.impact import ImpactEntry, apply_change, decode_change, encode_entry, entry_message, unpack
from stream.kafka.batching import current_record, make_current
from stream.kafka.outbox import Outbox, after, default_partition, send_together, tables_last
from stream.kafka.topics import TopicNames
from stream.serving.metrics import JourneyMetrics

__all__ = ["ImpactSums"]


class ImpactSums:
    """The batch handler of the impact-changes topic, and its `impact` table."""

    def __init__(
        self, app: faust.App, table: Any, names: TopicNames, metrics: JourneyMetrics, *, batch_bytes: int
    ) -> None:
        self.app = app
        self.table = table
        self.names = names
        self.metrics = metrics
        self._batch_bytes = batch_bytes
        self._completing: asyncio.Future[None] | None = None
        self._joint_before = True  # as in `ShareJoins`

    async def handle(self, outbox: Outbox, batches: Mapping[TP, Sequence[Any]]) -> Awaitable[None]:
        """What one fetch brought from the impact-changes topic: each entry's owner adds the
        changes up and sends the entries that changed, once each per batch, to `impact`.

        An entry remembers the offset of the last change it took (`apply_change`), so a
        change delivered again after a crash is not counted twice; an entry's table record
        and its `impact` message leave in one request (`send_together`), so a crash never
        separates the sums from the message that publishes them. An entry left with no
        customer is kept (its version goes on) and its `impact` key gets a tombstone."""
        names = self.names
        changelog = self.table.changelog_topic.get_topic_name()
        chunk = outbox
        impact_partitions = await chunk.partition_count(names.impact)
        tables = await tables_last(chunk, changelog, names.impact)
        if tables is None and self._completing is not None and not self._joint_before:
            await self._completing  # as in `ShareJoins.handle`
        self._joint_before = tables is None
        currents: dict[int, faust.EventT[Any]] = {}
        changed: dict[str, tuple[int, ImpactEntry]] = {}
        for tp, records in batches.items():
            currents[tp.partition] = current_record(self.app, tp, records[0])
            for record in records:
                entry_key = bytes(record.key).decode("utf-8")
                entry: ImpactEntry | None = self.table.data.get(entry_key)
                if entry is None:
                    entry = ImpactEntry()
                if apply_change(entry, decode_change(record.value), record.offset):
                    self.table.data[entry_key] = entry
                    changed[entry_key] = (tp.partition, entry)
        deliveries: list[Awaitable[Any]] = []
        limit = self._batch_bytes
        for entry_key, (partition, entry) in changed.items():
            entry.version += 1
            key = entry_key.encode("utf-8")
            sums = unpack(entry.sums)
            record = encode_entry(entry, sums)
            message = (
                orjson.dumps(entry_message(entry_key, sums, entry.version, onward_known=entry.onward_known))
                if sums[0]
                else None
            )
            impact_partition = default_partition(key, impact_partitions)
            if not (
                (tables is not None or chunk.has_room(changelog, partition, key, record, limit))
                and chunk.has_room(names.impact, impact_partition, key, message, limit)
            ):
                deliveries += await send_together(chunk)
            make_current(currents[partition])
            (chunk if tables is None else tables).add(changelog, key, record, partition)
            chunk.add(names.impact, key, message, impact_partition)
        deliveries += await send_together(chunk)
        if changed:
            self.metrics.impact_updates.inc(len(changed))
        completing = self._completing = after(deliveries, self._completing, tables)
        return completing
