"""The share joins: sightings of a share and of the touchpoints it brought, joined into
referral links (`journey.referrals.apply_sighting`), and the joins' part in erasures and
merges (forget, rename)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import faust
import orjson
from faust.types import TP

from journey.referrals import JoinResult, ShareJoin, apply_sighting, encode_join
from stream.kafka.batching import current_record, make_current
from stream.kafka.outbox import Outbox, PlacedRecords, after, default_partition, send_together, tables_last
from stream.kafka.topics import TopicNames
from stream.processing.erasure.eraser import Eraser
from stream.processing.identity.merging import Merger
from stream.processing.stores import store_get
from stream.serving.metrics import JourneyMetrics

__all__ = ["ShareJoins"]


class ShareJoins:
    """The batch handler of the share-joins topic, and its `shares` table."""

    def __init__(
        self,
        app: faust.App,
        table: Any,
        names: TopicNames,
        eraser: Eraser,
        merger: Merger,
        metrics: JourneyMetrics,
        *,
        batch_bytes: int,
    ) -> None:
        self.app = app
        self.table = table
        self.names = names
        self.eraser = eraser
        self.merger = merger
        self.metrics = metrics
        self._batch_bytes = batch_bytes
        # The store itself, as written below (see `Customers.state`).
        self._held = store_get(table)
        self._completing: asyncio.Future[None] | None = None
        # Whether the last batch sent its table records with its outputs, rather than after
        # them (see `tables_last`).
        self._joint_before = True

    async def handle(self, outbox: Outbox, batches: Mapping[TP, Sequence[Any]]) -> Awaitable[None]:
        """What one fetch brought from the share-joins topic: per partition, in offset order.

        A join and the links it makes must leave in one produce request, so that a killed
        worker delivers both or neither: sent apart, a crash lost a link or (awaited the
        other way round) repeated one. The joins of a batch go out in chunks, each one
        request (`send_together`): a chunk takes joins while every partition's records
        stay within one record batch. Across several brokers a chunk would be several
        requests: there the links go first and the joins' records once they are
        acknowledged (`tables_last`), so a crash repeats a link rather than lose it. One
        join whose own records overflow a batch (a share with hundreds of waiting
        touchpoints) leaves in several requests.
        """
        names = self.names
        changelog = self.table.changelog_topic.get_topic_name()
        limit = self._batch_bytes
        chunk = outbox
        # Metadata known before queuing: no pause in the middle of a chunk.
        link_partitions = await chunk.partition_count(names.referral_links)
        referred_partitions = await chunk.partition_count(names.referred)
        tables = await tables_last(chunk, changelog, names.referral_links, names.referred)
        if tables is None and self._completing is not None and not self._joint_before:
            # The last batch's records were held back: this batch's must not overtake them.
            await self._completing
        self._joint_before = tables is None
        deliveries: list[Awaitable[Any]] = []
        links = self_referrals = 0
        for tp, records in batches.items():
            current = current_record(self.app, tp, records[0])
            for record in records:
                key, stored, out, result = self._join(record, link_partitions, referred_partitions)
                if tables is None:
                    out.insert(0, (changelog, tp.partition, key, stored))
                else:
                    tables.add(changelog, key, stored, tp.partition)
                if not chunk.fits(out, limit):
                    deliveries += await send_together(chunk)
                    make_current(current)  # others ran meanwhile
                for topic, partition, out_key, out_value in out:
                    chunk.add(topic, out_key, out_value, partition)
                links += len(result.links)
                self_referrals += result.self_referrals
        deliveries += await send_together(chunk)
        self.metrics.referral_links.inc(links)
        if self_referrals:
            self.metrics.self_referrals.inc(self_referrals)
        completing = self._completing = after(deliveries, self._completing, tables)
        return completing

    def _join(
        self, record: Any, link_partitions: int, referred_partitions: int
    ) -> tuple[bytes, bytes | None, PlacedRecords, JoinResult]:
        """One sighting (or a forget, a rename) taken by its join: the join's key, its
        encoded record (None: nothing left of it) and the records the join sends."""
        names = self.names
        sighting = orjson.loads(record.value)
        share_id = sighting["share_id"]
        join: ShareJoin | None = self._held(share_id)
        if join is None:
            join = ShareJoin(share_id)
        out: PlacedRecords = []
        if sighting["kind"] == "forget":
            result = self.eraser.forget_in_join(join, sighting, referred_partitions, out)
        elif sighting["kind"] == "rename":
            result = self.merger.rename_in_join(join, sighting, referred_partitions, out)
        else:
            result = apply_sighting(join, sighting)
        for link in result.links:
            referrer = link["referrer_id"].encode("utf-8")
            partition = default_partition(referrer, link_partitions)
            out.append((names.referral_links, partition, referrer, orjson.dumps(link)))
            # And to the referred customer's partition, in the same request: its keys,
            # numbered (`take_referral`) before the join is stored with its count.
            referred = link["referred_id"].encode("utf-8")
            to_referred = orjson.dumps(join.numbered(link))
            out.append(
                (names.referred, default_partition(referred, referred_partitions), referred, to_referred)
            )
        if join.is_empty():
            self.table.data.pop(share_id, None)
            return share_id.encode("utf-8"), None, out, result
        self.table.data[share_id] = join
        return share_id.encode("utf-8"), encode_join(join), out, result
