"""The pipeline: the topics, tables and batch handlers of one worker, and the dispatcher
that hands each input record to the handler of its kind.

    input topics ──► dispatch ──► (invalid) ──────────────────────────► dead-letters
         ▲             │ (wrong key or partition)
         └── rekeyed ◄─┤
                       ├──► events: customers table ─► apply_event ─► ppp-updates
                       │          │  └─ contribution changes ─► impact-changes ─► ImpactSums ─► impact
                       │          └─────────────────────────────────┐
                       └──► share-joins ──► ShareJoins ─► shares table ─► referral-links
                                                        └──► referred ─► dispatch (the referred customer's keys)

    identify events, identity messages ─► `identity.handlers` (persons of several ids)
    erasures, a person's erase/erased ──► `erasure.handlers` (customers and persons erased)

Everything that decides anything lives in the pure core (`journey.scoring`,
`journey.referrals`, `journey.impact`, `journey.identity`, `journey.erasure`) and in
`schemas`; the handlers only move bytes and keep tables.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import faust
import orjson
from faust.types import TP

from journey.settings import Settings
from schemas.decode import InvalidEvent, parse_erasure, parse_event
from schemas.events import ErasureRequest, Identify, Incoming
from stream.kafka.batching import JourneyApp, current_record
from stream.kafka.connection import kafka_options
from stream.kafka.outbox import Outbox, default_partition, delivered, led_by_one
from stream.kafka.topics import ORIGIN_HEADER, TopicNames, origin_of
from stream.processing.batch import Arrival, Batch, Config
from stream.processing.codecs import IMPACT_ENTRY_CODEC, SHARE_JOIN_CODEC
from stream.processing.customers import Customers
from stream.processing.dead_letters import reject
from stream.processing.erasure.eraser import Eraser
from stream.processing.erasure.handlers import ErasureHandlers
from stream.processing.erasure.persons import PersonEraser
from stream.processing.events import Events
from stream.processing.identity.handlers import IdentityHandlers
from stream.processing.identity.merging import IDENTITY_ORIGIN, Merger
from stream.processing.impact import ImpactSums
from stream.processing.referrals import Referrals
from stream.processing.shares import ShareJoins
from stream.serving.metrics import JourneyMetrics

__all__ = ["Pipeline"]

# A handler takes one decoded record of a batch; those that read topics (an erasure's
# re-read) are coroutines, the others return None.
Handler = Callable[[Batch, Arrival], Awaitable[None] | None]


class Pipeline:
    """The topics, tables and batch handlers of one worker, registered on its Faust app."""

    def __init__(
        self, app: JourneyApp, settings: Settings, metrics: JourneyMetrics, *, partitions: int
    ) -> None:
        # The worker's wiring in one place (70 lines, a third of them why each table is kept
        # as it is): topics, tables, the protocols over them, and the handlers.
        self.app = app
        self.metrics = metrics
        names = TopicNames(settings.topic_prefix, settings.app_id)
        self.config = Config(settings.rules, names, partitions, settings.max_event_bytes)
        self.inputs = self._raw_topic(app, *names.inputs, names.erasures, names.rekeyed, names.referred)
        self.share_joins = self._raw_topic(app, names.share_joins)
        self.impact_changes = self._raw_topic(app, names.impact_changes)
        # Keys are customer_id / share_id as UTF-8, exactly as the source topics are keyed,
        # so that a table key lives on the partition its events arrive on and HTTP lookups
        # route to the worker that owns it.
        # Customers are held encoded (a few hundred bytes each), a fifth of the memory of
        # live objects; only the most recently handled ones are also kept decoded.
        self.customers = self._table(app, "customers", "raw", partitions)
        # Their history in segments written once (`journey.stored`): so that what a worker
        # writes for an event does not grow with the customer's history.
        self.history = self._table(app, "history", "raw", partitions)
        self.shares = self._table(app, "shares", SHARE_JOIN_CODEC, partitions)
        # Impact entries by `dimension/key`, each owned by the partition its changes arrive on.
        self.impact = self._table(app, "impact", IMPACT_ENTRY_CODEC, partitions)
        # What each erased customer's requests were (`journey.erasure.ErasureRecord`): the
        # horizon below which its late events are dropped, kept like the customers.
        self.erasures = self._table(app, "erasures", "raw", partitions)
        self.eraser = Eraser(
            self.erasures,
            names,
            settings.rules,
            kafka_options(settings),
            settings.max_event_bytes,
            stable_ends=app.transactions is not None,
        )
        # The ids of persons of several ids (`journey.identity.IdRecord`): a canonical id's
        # person, or where an id that stopped being canonical went.
        self.persons = self._table(app, "persons", "raw", partitions)
        self.merger = Merger(self.persons, names, settings.rules)
        self.person_eraser = PersonEraser(self.eraser, self.merger, self.partition_for)
        # What a chunk may put on one partition: a record batch, less its header.
        batch_bytes = int(app.conf.producer_max_batch_size) - 128
        self.states = Customers(
            self.customers,
            self.history,
            self.config,
            self.eraser,
            self.merger,
            metrics,
            cached=settings.cached_customers,
            batch_bytes=batch_bytes,
        )
        # The top customers by PPP of each partition this worker owns (`stream.serving.leaders`).
        self.leaders = self.states.leaders
        self._partition_counts: dict[str, int] = {}
        # The last batch's sends still waiting for the broker (see `_finish`).
        self._completing: asyncio.Future[None] | None = None
        self._with_states = settings.updates_with_states
        # Whether the last batch's updates left with their states (see `_one_leader`).
        self._joint_before = False
        # mode's handler type does not admit a bound coroutine method; the call shape matches.
        app.on_partitions_assigned.connect(cast(Any, self._forget_live))
        self._handlers = self._dispatch_table()
        self._origins = {**names.inputs, names.erasures: "erasure", IDENTITY_ORIGIN: "identity"}
        # TopicNames builds a name at each access: these two, once here, not per record.
        self._rekeyed, self._referred = names.rekeyed, names.referred
        self._share_joins = ShareJoins(
            app, self.shares, names, self.eraser, self.merger, metrics, batch_bytes=batch_bytes
        )
        self._impact_sums = ImpactSums(app, self.impact, names, metrics, batch_bytes=batch_bytes)
        # The input topics are consumed in whole fetched batches (stream.kafka.batching), not
        # by an agent; added to the conductor so that the consumer subscribes to them.
        app.topics.add(self.inputs)
        app.batch_handlers.update(dict.fromkeys(self.inputs.topics, self._ingest))
        app.topics.add(self.share_joins)
        app.batch_handlers[names.share_joins] = self._join_shares
        app.topics.add(self.impact_changes)
        app.batch_handlers[names.impact_changes] = self._sum_changes

    def _dispatch_table(self) -> dict[str, Handler]:
        """The handler of each kind of input record (`_arrival` tells the kind)."""
        events = Events(self.config, self.states, self.merger, self.eraser)
        identity = IdentityHandlers(self.states, self.merger, self.eraser, self.person_eraser)
        erasure = ErasureHandlers(self.config, self.states, self.eraser, self.person_eraser)
        referrals = Referrals(self.config, self.states, self.merger)
        return {
            "event": events.handle,
            "identify": identity.identify,
            "erasure": erasure.request,
            "identity": identity.message,
            "erase": erasure.erase,
            "erased": erasure.erased,
            "link": referrals.handle,
            "renamed": identity.renamed,
            "forgotten": erasure.forgotten,
        }

    async def _forget_live(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        self.states.reset()

    @staticmethod
    def _raw_topic(app: faust.App, *names: str) -> faust.TopicT:
        # Bytes in, bytes out: decoding and validation are ours, so that a bad message
        # becomes a dead letter instead of a Faust decode error.
        return app.topic(
            *names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    @staticmethod
    def _table(app: faust.App, name: str, codec: str, partitions: int) -> Any:
        table: Any = app.Table(name, default=None, key_type=str, partitions=partitions)
        # Faust picks serializers from the types (json for str keys, which would quote them)
        # and its constructor already built the changelog topic with those: set ours, then
        # build the changelog topic again so that it writes and recovers with them too.
        table.key_serializer = "raw"
        table.value_serializer = codec
        table.changelog_topic = table._new_changelog_topic()  # noqa: SLF001  # see above
        return table

    def partition_for(self, key: bytes) -> int:
        """The partition the default (murmur2) partitioner gives `key`, as Faust's producer does."""
        return default_partition(key, self.config.partitions)

    async def _ingest(self, batches: Mapping[TP, Sequence[Any]]) -> Awaitable[None]:
        """What one fetch brought from the input topics: per partition, in offset order,
        each record decoded once and handed to the handler of its kind.

        Each customer is decoded once a batch and stored (table and changelog) once, with
        its last state; every update is still its own message, in order. A customer's
        events can come from several input topics (and the rekeyed one), always on the
        customer's partition: partitions are handled one after the other, so they share
        the decoded states safely.
        """
        started = time.perf_counter()
        batch = Batch(datetime.now(UTC), self._outbox())
        batch.joint = self._with_states and await self._one_leader(batch.out)
        for tp, records in batches.items():
            batch.current[tp.partition] = current_record(self.app, tp, records[0])
            for record in records:
                arrival = self._arrival(batch, tp, record)
                if arrival is not None:
                    handled = self._handlers[arrival.kind](batch, arrival)
                    if handled is not None:
                        await handled
        return await self._finish(batch, started)

    def _arrival(self, batch: Batch, tp: TP, record: Any) -> Arrival | None:
        """A record decoded, with its kind; None for one rejected (a dead letter) or sent on
        to its customer's partition, as counted when it comes back there."""
        names = self.config.names
        if tp.topic == self._referred:
            message = orjson.loads(record.value)
            kind = message.get("kind")
            kind = kind if kind in ("forgotten", "renamed") else "link"
            return Arrival(kind, record, tp.topic, tp.partition, False, message)
        rekeyed = tp.topic == self._rekeyed
        origin = origin_of(record, self._rekeyed)
        kind = self._origins.get(origin)
        if kind is None:
            reject(batch, names.dead_letters, record, origin, f"{ORIGIN_HEADER} header names no input topic")
            return None
        if kind == "identity" and rekeyed:
            message = orjson.loads(record.value)
            kind = message["kind"] if message["kind"] in ("erase", "erased") else "identity"
            return Arrival(kind, record, origin, tp.partition, True, message)
        try:
            if kind == "erasure":
                parsed: Incoming | ErasureRequest = parse_erasure(
                    record.value or b"", max_bytes=self.config.max_event_bytes
                )
            else:
                parsed = parse_event(
                    record.value or b"",
                    expected_type=kind,
                    currencies=self.config.rules.rates,
                    max_bytes=self.config.max_event_bytes,
                )
        except InvalidEvent as exc:
            reject(batch, names.dead_letters, record, origin, str(exc))
            return None
        key = parsed.customer_id.encode("utf-8")
        if not rekeyed and (record.key != key or record.partition != self.partition_for(key)):
            # Counted once, when it comes back on its customer's partition.
            batch.out.add(self._rekeyed, key, record.value, headers=[(ORIGIN_HEADER, origin.encode())])
            return None
        if kind != "erasure":
            kind = "identify" if isinstance(parsed, Identify) else "event"
        return Arrival(kind, record, origin, tp.partition, rekeyed, parsed)

    async def _finish(self, batch: Batch, started: float) -> Awaitable[None]:
        """The batch's sightings to the share joins, its customers stored, and its outputs
        sent once their states are acknowledged (the future returned)."""
        names = self.config.names
        for customer_id, at, share_key, sighting in batch.sightings:
            if at > batch.horizons.get(customer_id, at - 1):
                batch.out.add(names.share_joins, share_key, sighting)
        if self._completing is not None and (
            batch.erasure or batch.identity.messages or (batch.joint and not self._joint_before)
        ):
            # The forgets below must reach the share joins after every sighting of the
            # erased customers sent before: the last batch's are sent when it completes.
            # And updates that leave with their states must not overtake the last batch's,
            # if those waited for their states' acknowledgement.
            await self._completing
        self._joint_before = batch.joint
        # An update never reaches the broker without the state it explains. Were a crash
        # to keep an update but lose its state, redelivery would publish that version
        # again after later ones (seen: versions 1, 2, 1, 2). So the updates leave in the
        # same produce request as their states (`_one_leader`), or else once the states
        # are acknowledged: queued in order is not enough, as a send to a partition whose
        # batch is full waits for it to drain while other partitions' batches go out. The
        # other way round, a state without its update (the update's record batch came
        # after a full one), the first event after the takeover re-sends it (`Events.score`).
        # Straight to the Kafka producer, which every offset commit flushes first. Faust's
        # own table writes (`table[key] = value`) go through its producer buffer, which a
        # commit gives only 0.1 s to drain: a worker killed just after a commit came back
        # without the state of events whose offsets were committed (the embedded broker).
        # So tables are written as `data[key]` plus a changelog record we send ourselves.
        stored = await self.states.store(batch)
        self.states.keep_decoded(batch)
        handled = time.perf_counter() - started
        previous = self._completing

        async def complete() -> None:
            # Overlaps with handling the next batch; in batch order, so a customer's
            # updates stay in version order across batches.
            await delivered(stored)
            if previous is not None:
                await previous
            await batch.out.send()
            self.metrics.record(batch.tally, handled)

        completing = self._completing = asyncio.ensure_future(complete())
        return completing

    async def _one_leader(self, outbox: Outbox) -> bool:
        """Whether one broker leads every partition of the customers changelog and of
        `ppp-updates`: then a chunk of states takes their updates too, and a chunk leaves in
        one produce request (`send_together`), so a killed worker delivers a state with its
        updates or neither, and the updates need not wait for the states' acknowledgement
        (which cost about 50 ms of latency at p50, docs/benchmarks.md). On a cluster whose
        leaders differ, a batch's updates wait for its states' acknowledgement."""
        return await led_by_one(
            outbox, self.customers.changelog_topic.get_topic_name(), self.config.names.ppp_updates
        )

    async def _join_shares(self, batches: Mapping[TP, Sequence[Any]]) -> Awaitable[None]:
        return await self._share_joins.handle(self._outbox(), batches)

    async def _sum_changes(self, batches: Mapping[TP, Sequence[Any]]) -> Awaitable[None]:
        return await self._impact_sums.handle(self._outbox(), batches)

    def _outbox(self) -> Outbox:
        # Faust's Kafka producer itself: `_ensure_producer` is how Faust reaches it too.
        producer = cast(Any, self.app.producer)._ensure_producer()  # noqa: SLF001
        return Outbox(producer, self._partition_counts)
