"""The pipeline: one event's path from an input topic to `ppp-updates`, `referral-links`
and `impact`.

    input topics ──► ingest ──► (invalid) ──────────────────────────► dead-letters
         ▲             │ (wrong key or partition)
         └── rekeyed ◄─┤
                       ├──► customers table ─► apply_event ─► ppp-updates
                       │          │  └─ contribution changes ─► impact-changes ─► impact table ─► impact
                       │          └─────────────────────────────────┐
                       └──► share-joins ──► join ─► shares table ─► referral-links
                                                        └──► referred ─► ingest (the referred customer's keys)

    erasures ──► ingest: the customer erased, its joins asked to forget (`stream.processing.erasure.eraser`)

Everything that decides anything lives in the pure core (`journey.scoring`,
`journey.referrals`, `journey.impact`) and in `schemas`; this module only moves bytes and
keeps tables.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import faust
import orjson
from aiokafka.structs import TopicPartition
from faust.types import TP

from journey.customer import CustomerState, decode_state, encode_state, format_us, to_us
from journey.identity import identify_edge
from journey.impact import (
    Contribution,
    ImpactEntry,
    Packed,
    add_change,
    apply_change,
    contribution,
    decode_change,
    encode_change,
    encode_entry,
    entry_message,
    unpack,
)
from journey.referrals import (
    ShareJoin,
    apply_sighting,
    encode_join,
    sighting_for,
    take_referral,
)
from journey.scoring import ScoringRules, apply_event, ppp_update
from journey.settings import Settings
from schemas.decode import InvalidEvent, parse_erasure, parse_event
from schemas.events import ErasureRequest, Event, Identify, Incoming
from stream.kafka.batching import JourneyApp, current_record, make_current
from stream.kafka.connection import kafka_options
from stream.kafka.outbox import Outbox, default_partition, delivered, estimate, send_together
from stream.kafka.topics import ORIGIN_HEADER, TopicNames, origin_of
from stream.processing.codecs import IMPACT_ENTRY_CODEC, SHARE_JOIN_CODEC
from stream.processing.erasure.eraser import Eraser, ErasureWork, JoinRecords
from stream.processing.erasure.persons import PersonEraser
from stream.processing.identity.merging import IDENTITY_ORIGIN, IdentityWork, Merger
from stream.processing.stores import store_get
from stream.serving.leaders import LeaderBoard
from stream.serving.metrics import BatchTally, JourneyMetrics

__all__ = ["DEAD_LETTER_VALUE_LIMIT", "Pipeline"]

# A dead letter must itself fit in a Kafka message (1 MB by default): longer values are cut.
DEAD_LETTER_VALUE_LIMIT = 262_144
# Room kept in a chunk for one impact change record (`encode_change`), added at its end,
# and on every partition for the new entries of one more customer (a customer with more
# keys than this holds can make its chunk two requests).
_CHANGE_ROOM = encode_change(0)
_CHANGES_MARGIN = 32_768


def _as_text(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def dead_letter(
    *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, error: str
) -> dict[str, Any]:
    """The `dead-letters` message of SPEC.md for one rejected input message."""
    raw = value or b""
    letter: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset, "key": None}
    if key is not None:
        letter["key"], key_encoding = _as_text(key)
        if key_encoding != "utf-8":
            letter["key_encoding"] = key_encoding
    if len(raw) > DEAD_LETTER_VALUE_LIMIT:
        letter["value_truncated"] = True
        letter["value_bytes"] = len(raw)
        raw = raw[:DEAD_LETTER_VALUE_LIMIT]
    letter["value"], encoding = _as_text(raw)
    if encoding != "utf-8":
        letter["value_encoding"] = encoding
    letter["error"] = error
    letter["received_at"] = format_us(to_us(datetime.now(UTC)))
    return letter


def _size(key: bytes, values: list[bytes]) -> int:
    """What records of `values` under `key` take in a record batch (`estimate`)."""
    return sum(estimate(key, value) for value in values)


def _after(
    deliveries: list[Awaitable[Any]], previous: asyncio.Future[None] | None, tables: Outbox | None = None
) -> asyncio.Future[None]:
    """Done when `deliveries` are acknowledged and the previous batch's completion is done:
    a handler's batches complete in the order they came (see `BatchHandler`). Then
    `tables` (changelog records held back, see `Pipeline._tables_last`) are sent and
    acknowledged too."""

    async def complete() -> None:
        await delivered(deliveries)
        if previous is not None:
            await previous
        if tables is not None:
            await delivered(await tables.send())

    return asyncio.ensure_future(complete())


@dataclass(slots=True)
class _Batch:
    """One input batch in the making: customers decoded, what changed, what to send."""

    received: datetime
    out: Outbox
    states: dict[str, CustomerState] = field(default_factory=dict)
    # Each customer's impact contribution as stored before this batch.
    before: dict[str, Contribution | None] = field(default_factory=dict)
    # Customers whose state changed, by their partition (which is their changelog's).
    changed: defaultdict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    # Faust's current event for each partition of the batch (see `current_record`).
    current: dict[int, faust.EventT[Any]] = field(default_factory=dict)
    tally: BatchTally = field(default_factory=BatchTally)
    # Erasure horizons of the batch's customers that have one (see `_state`).
    horizons: dict[str, int] = field(default_factory=dict)
    # Sightings for the share joins: (customer_id, at_us, share key, message), sent once
    # the batch is over, without those an erasure later in the batch removed.
    sightings: list[tuple[str, int, bytes, bytes]] = field(default_factory=list)
    # What erasures changed, to leave with the customers' states in one request (see
    # `_store_customers`).
    erasure: ErasureWork = field(default_factory=ErasureWork)
    # What identify events and identity messages changed (`stream.processing.identity.merging`), likewise.
    identity: IdentityWork = field(default_factory=IdentityWork)
    # Whether the batch's updates leave with their customers' states (`_one_leader`): then
    # they wait here, per customer in version order, instead of in `out`.
    joint: bool = False
    updates: dict[str, list[bytes]] = field(default_factory=dict)

    def update(self, topic: str, customer_id: str, key: bytes, value: bytes) -> None:
        if self.joint:
            self.updates.setdefault(customer_id, []).append(value)
        else:
            self.out.add(topic, key, value)

    def updates_apart(self, topic: str) -> None:
        """From here on the updates go in `out`, after those held so far (in their order)."""
        for customer_id, values in self.updates.items():
            key = customer_id.encode("utf-8")
            for value in values:
                self.out.add(topic, key, value)
        self.updates.clear()
        self.joint = False


class _Host:
    """The batch's states as the merger (`stream.processing.identity.merging.StateHost`) reads and changes them."""

    __slots__ = ("batch", "pipeline")

    def __init__(self, pipeline: Pipeline, batch: _Batch) -> None:
        self.pipeline = pipeline
        self.batch = batch

    def state(self, customer_id: str) -> CustomerState:
        return self.pipeline._state(self.batch, customer_id)  # noqa: SLF001  # the pipeline's own helper

    def replace(self, state: CustomerState, partition: int) -> None:
        self.state(state.customer_id)  # its contribution before, noted
        self.batch.states[state.customer_id] = state
        self.batch.changed[partition].add(state.customer_id)
        self.batch.identity.touched.add(state.customer_id)

    def publish(self, state: CustomerState) -> None:
        update = ppp_update(state)
        key = state.customer_id.encode("utf-8")
        self.batch.update(
            self.pipeline.config.names.ppp_updates, state.customer_id, key, orjson.dumps(update)
        )
        self.batch.tally.update_sent(update["csat"], update["ppp"])

    def tombstone(self, customer_id: str) -> None:
        topic = self.pipeline.config.names.ppp_updates
        # After the updates before it, as an erasure's (`Pipeline._erase`).
        self.batch.updates_apart(topic)
        self.batch.out.add(topic, customer_id.encode("utf-8"), None)
        self.pipeline._live.add(customer_id)  # noqa: SLF001  # the pipeline's own set

    def settled(self, customer_id: str) -> None:
        """A merge was delivered again: the first time since this process took the person
        over, its current update goes out again, as `Pipeline._score` does for an event. A
        crash can deliver the merged state but lose its update (which leaves after the
        state's acknowledgement once a tombstone is in the batch), and the redelivered
        merge changes nothing: seen as a person's last update older than its state."""
        if self.pipeline.first_since_takeover(customer_id):
            state = self.state(customer_id)
            if state.version > 0:
                self.publish(state)

    def followed(self, customer_id: str) -> None:
        """A pointer was followed: the first time since this process took the id over, its
        tombstone goes out again, as `Pipeline._score` re-sends a current update. A crash
        can deliver the pointer's record but lose the tombstone, which goes out after it."""
        if self.pipeline.first_since_takeover(customer_id):
            self.tombstone(customer_id)


class _Erasures:
    """The batch as `stream.processing.erasure.persons` routes and carries out requests in it."""

    __slots__ = ("batch", "pipeline")

    def __init__(self, pipeline: Pipeline, batch: _Batch) -> None:
        self.pipeline = pipeline
        self.batch = batch

    def state(self, customer_id: str) -> CustomerState:
        return self.pipeline._state(self.batch, customer_id)  # noqa: SLF001  # the pipeline's own helpers

    def restart(self, customer_id: str, replacement: CustomerState | None, partition: int) -> None:
        self.pipeline._restart(self.batch, customer_id, replacement, partition)  # noqa: SLF001

    def count(self, origin: str, outcome: str) -> None:
        self.batch.tally.event(origin, outcome)

    def erased_to(self, customer_id: str, horizon: int) -> None:
        self.batch.horizons[customer_id] = horizon

    def followed(self, customer_id: str) -> None:
        _Host(self.pipeline, self.batch).followed(customer_id)

    async def erase_one(
        self, request: ErasureRequest, origin: str, partition: int, reached: list[str], quiet: bool
    ) -> bool:
        return await self.pipeline._erase(self.batch, request, origin, partition, reached, quiet)  # noqa: SLF001


@dataclass(frozen=True, slots=True)
class _Config:
    rules: ScoringRules
    names: TopicNames
    partitions: int
    max_event_bytes: int


class Pipeline:
    """The topics, tables and batch handlers of one worker, registered on its Faust app."""

    def __init__(
        self, app: JourneyApp, settings: Settings, metrics: JourneyMetrics, *, partitions: int
    ) -> None:
        self.app = app
        self.metrics = metrics
        names = TopicNames(settings.topic_prefix, settings.app_id)
        self.config = _Config(settings.rules, names, partitions, settings.max_event_bytes)
        self.inputs = self._raw_topic(app, *names.inputs, names.erasures, names.rekeyed, names.referred)
        self.share_joins = self._raw_topic(app, names.share_joins)
        self.impact_changes = self._raw_topic(app, names.impact_changes)
        # Keys are customer_id / share_id as UTF-8, exactly as the source topics are keyed,
        # so that a table key lives on the partition its events arrive on and HTTP lookups
        # route to the worker that owns it.
        # Customers are held encoded (a few hundred bytes each), a fifth of the memory of
        # live objects; only the most recently handled ones are also kept decoded.
        self.customers = self._table(app, "customers", "raw", partitions)
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
        # The stores themselves, as the handlers write them (`data[key]`, see `_ingest`).
        self._held_customer = store_get(self.customers)
        self._held_join = store_get(self.shares)
        # The top customers by PPP of each partition this worker owns (`stream.serving.leaders`).
        self.leaders = LeaderBoard(self.customers.data, partitions)
        # Customers this process has handled since its last assignment (see `_score`).
        self._live: set[str] = set()
        # The most recently handled customers, decoded, and their impact contributions: the
        # same as their table entries, which only this process writes until the next
        # assignment (then they are emptied).
        self._decoded: OrderedDict[str, CustomerState] = OrderedDict()
        self._contributions: dict[str, Contribution | None] = {}
        self._decoded_limit = settings.cached_customers
        self._partition_counts: dict[str, int] = {}
        # The last batch's sends still waiting for the broker (see `_ingest`, `_join_shares`).
        self._completing: asyncio.Future[None] | None = None
        self._with_states = settings.updates_with_states
        # Whether the last batch's updates left with their states (see `_one_leader`).
        self._joint_before = False
        self._joins_completing: asyncio.Future[None] | None = None
        # Whether the last batch of joins (of impact changes) sent its table records with
        # its outputs, rather than after them (see `_tables_last`).
        self._joins_joint_before = True
        self._changes_joint_before = True
        # What a chunk of joins may put on one partition: a record batch, less its header.
        self._batch_bytes = int(app.conf.producer_max_batch_size) - 128
        # mode's handler type does not admit a bound coroutine method; the call shape matches.
        app.on_partitions_assigned.connect(cast(Any, self._forget_live))
        # The input topics are consumed in whole fetched batches (stream.kafka.batching), not by
        # an agent; added to the conductor so that the consumer subscribes to them.
        app.topics.add(self.inputs)
        app.batch_handlers.update(dict.fromkeys(self.inputs.topics, self._ingest))
        self._origins = {**names.inputs, names.erasures: "erasure", IDENTITY_ORIGIN: "identity"}
        app.topics.add(self.share_joins)
        app.batch_handlers[names.share_joins] = self._join_shares
        app.topics.add(self.impact_changes)
        app.batch_handlers[names.impact_changes] = self._sum_changes
        self._changes_completing: asyncio.Future[None] | None = None

    def first_since_takeover(self, customer_id: str) -> bool:
        """Whether this process handles `customer_id` for the first time since it took its
        partition over (and from now on it has): then what a crash may have lost of the
        customer's last output (an update, a tombstone) is sent again."""
        if customer_id in self._live:
            return False
        self._live.add(customer_id)
        return True

    async def _forget_live(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # After a rebalance, any customer may have been handled elsewhere in between.
        self._live.clear()
        self._decoded.clear()
        self._contributions.clear()
        self.leaders.reset()

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
        """What one fetch brought from the input topics: per partition, in offset order.

        Each customer is decoded once a batch and stored (table and changelog) once, with
        its last state; every update is still its own message, in order. A customer's
        events can come from several input topics (and the rekeyed one), always on the
        customer's partition: partitions are handled one after the other, so they share
        the decoded states safely.
        """
        started = time.perf_counter()
        batch = _Batch(datetime.now(UTC), self._outbox())
        names = self.config.names
        batch.joint = self._with_states and await self._one_leader(batch.out)
        for tp, records in batches.items():
            batch.current[tp.partition] = current_record(self.app, tp, records[0])
            if tp.topic == names.referred:
                for record in records:
                    self._referred(batch, orjson.loads(record.value), tp.partition)
                continue
            rekeyed = tp.topic == names.rekeyed
            for record in records:
                origin = origin_of(record, names.rekeyed)
                kind = self._origins.get(origin)
                if kind is None:
                    self._reject(batch, record, origin, f"{ORIGIN_HEADER} header names no input topic")
                    continue
                if kind == "identity" and rekeyed:
                    person = bytes(record.key).decode("utf-8")
                    message = orjson.loads(record.value)
                    horizon = (
                        self.eraser.horizon(person, batch.erasure, tp.partition)
                        if message["kind"] == "pull"
                        else None
                    )
                    if horizon is not None and message["at"] <= horizon:
                        # An identify this id's erasure took: the erasure reaches its other
                        # id's person, and this id stays where it is, remembering the link
                        # for its later requests.
                        edge = message.get("identify") or [
                            message["at"],
                            message["cause"],
                            message["to"],
                            person,
                        ]
                        # The identify event's other id (the puller's person, if it came
                        # along a pointer from elsewhere).
                        other = {edge[2]: edge[3], edge[3]: edge[2]}.get(person, message["to"])
                        self.person_eraser.took(batch.identity, person, other, edge, horizon, tp.partition)
                    elif message["kind"] == "erase":
                        await self.person_eraser.route(
                            batch.erasure,
                            batch.identity,
                            _Erasures(self, batch),
                            parse_erasure(orjson.dumps(message["request"])),
                            person,
                            tp.partition,
                            quiet=bool(message.get("quiet")),
                            edge=message.get("identify"),
                        )
                    elif message["kind"] == "erased":
                        horizon = await self.person_eraser.erased(
                            batch.erasure,
                            batch.identity,
                            person,
                            message,
                            tp.partition,
                            _Erasures(self, batch).restart,
                        )
                        batch.horizons[person] = horizon
                    else:
                        self.merger.handle(batch.identity, _Host(self, batch), person, message, tp.partition)
                    continue
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
                    self._reject(batch, record, origin, str(exc))
                    continue
                key = parsed.customer_id.encode("utf-8")
                if not rekeyed and (record.key != key or record.partition != self.partition_for(key)):
                    # Counted once, when it comes back on its customer's partition.
                    batch.out.add(
                        names.rekeyed, key, record.value, headers=[(ORIGIN_HEADER, origin.encode())]
                    )
                    continue
                if isinstance(parsed, ErasureRequest):
                    await self.person_eraser.route(
                        batch.erasure,
                        batch.identity,
                        _Erasures(self, batch),
                        parsed,
                        key.decode(),
                        tp.partition,
                    )
                elif isinstance(parsed, Identify):
                    horizon = self.eraser.horizon(parsed.customer_id, batch.erasure, tp.partition)
                    if horizon is not None and to_us(parsed.occurred_at) <= horizon:
                        # Erased with its customer_id, it takes the erasure to its other id;
                        # both remember the link for their later requests.
                        self.person_eraser.took(
                            batch.identity,
                            parsed.customer_id,
                            parsed.anonymous_id,
                            identify_edge(parsed),
                            horizon,
                            tp.partition,
                        )
                        batch.tally.event(origin, "erased")
                        continue
                    self.merger.identify(batch.identity, _Host(self, batch), parsed, tp.partition)
                    batch.tally.event(origin, "processed")
                else:
                    # A forwarded event comes keyed by the id of the person it is for.
                    person = (
                        bytes(record.key).decode("utf-8") if rekeyed and record.key else parsed.customer_id
                    )
                    to = self.merger.pointer(batch.identity, person, tp.partition)
                    horizon = (
                        self.eraser.horizon(person, batch.erasure, tp.partition)
                        if to is not None and person == parsed.customer_id
                        else None
                    )
                    if horizon is not None and to_us(parsed.occurred_at) <= horizon:
                        batch.tally.event(origin, "erased")  # the id's own erasure
                        continue
                    if to is None and person != parsed.customer_id and self._left(batch, person, parsed):
                        # Forwarded to a person its id has left (the person's erasure gave
                        # each id its own events back): back to its own id.
                        batch.out.add(
                            names.rekeyed,
                            parsed.customer_id.encode("utf-8"),
                            record.value,
                            headers=[(ORIGIN_HEADER, origin.encode())],
                        )
                        continue
                    if to is not None:
                        # The id stopped being canonical: its person is elsewhere now.
                        _Host(self, batch).followed(person)
                        batch.out.add(
                            names.rekeyed,
                            to.encode("utf-8"),
                            record.value,
                            headers=[(ORIGIN_HEADER, origin.encode())],
                        )
                        continue
                    self._score(batch, parsed, origin, person, tp.partition)
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
        # after a full one), the first event after the takeover re-sends it (`_score`).
        # Straight to the Kafka producer, which every offset commit flushes first. Faust's
        # own table writes (`table[key] = value`) go through its producer buffer, which a
        # commit gives only 0.1 s to drain: a worker killed just after a commit came back
        # without the state of events whose offsets were committed (the embedded broker).
        # So tables are written as `data[key]` plus a changelog record we send ourselves.
        stored = await self._store_customers(batch)
        self._keep_decoded(batch)
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

    def _state(self, batch: _Batch, customer_id: str) -> CustomerState:
        """The customer's state in this batch: decoded once, its contribution noted."""
        state = batch.states.get(customer_id)
        if state is not None:
            return state
        state = self._decoded.pop(customer_id, None)
        if state is not None:
            batch.before[customer_id] = self._contributions[customer_id]
        else:
            # The store itself, as `_ingest` writes it: Table.get's hooks cost 5% of a busy worker.
            held: bytes | None = self._held_customer(customer_id)
            state = CustomerState(customer_id) if held is None else decode_state(held)
            if held is None:
                ids = self.merger.ids_of(batch.identity, customer_id)
                if ids:
                    state.aliases = ids - {customer_id}
            batch.before[customer_id] = contribution(state)
        batch.states[customer_id] = state
        horizon = self.eraser.horizon(customer_id)
        if horizon is not None:
            batch.horizons[customer_id] = horizon
        return state

    def _keep_decoded(self, batch: _Batch) -> None:
        if not self._decoded_limit:
            return
        decoded = self._decoded
        contributions = self._contributions
        decoded.update(batch.states)  # taken out by `_state`, so they go back in as the newest
        contributions.update(batch.before)
        while len(decoded) > self._decoded_limit:
            del contributions[decoded.popitem(last=False)[0]]

    async def _store_customers(self, batch: _Batch) -> list[Awaitable[Any]]:
        """Write each changed customer's state (table and changelog) together with what its
        change does to the impact entries, and return the deliveries.

        A state and the change of its contribution must leave in one produce request: a
        crash that kept the state but lost the change would lose a contribution for good
        (the events are duplicates from then on), and the other way round would count it
        twice. So they go out in chunks (`send_together`), each chunk's changes summed per
        entry: the hot `all/*` entry gets one change per chunk, not one per event."""
        changelog = self.customers.changelog_topic.get_topic_name()
        topic = self.config.names.impact_changes
        updates_topic = self.config.names.ppp_updates
        limit = self._batch_bytes
        chunk = self._outbox()
        await chunk.partition_count(changelog)  # metadata known before queuing
        await chunk.partition_count(topic)
        update_partitions = await chunk.partition_count(updates_topic)
        changes: dict[str, Packed] = {}
        deliveries: list[Awaitable[Any]] = []
        if batch.erasure:
            await self.eraser.add_to(chunk, batch.erasure, batch.current)
        if batch.identity:
            merges = await self.merger.add_to(chunk, batch.identity, batch.current)
            if merges:
                self.metrics.merges.inc(merges)
        # The customers that erasures and merges changed first, of every partition: in the
        # request that takes their records (a record without its state, after a crash,
        # would make the redelivered message a duplicate and lose the state's change).
        first = batch.erasure.erased | batch.identity.touched
        order = [
            (partition, customer_id)
            for ahead in (True, False)
            for partition, customer_ids in batch.changed.items()
            for customer_id in customer_ids
            if (customer_id in first) == ahead
        ]
        current: faust.EventT[Any] | None = None
        for partition, customer_id in order:
            if current is not batch.current[partition]:
                current = batch.current[partition]
                make_current(current)
            assert current is not None
            state = batch.states[customer_id]
            gone = not state.holds_anything()
            encoded = None if gone else encode_state(state)
            key = customer_id.encode("utf-8")
            updates = batch.updates.pop(customer_id, ())
            room = chunk.has_room(changelog, partition, key, encoded, limit)
            if updates:
                to = default_partition(key, update_partitions)
                room = room and chunk.room_for(updates_topic, to, _size(key, updates), limit)
            if not room:
                deliveries += await self._send_with_changes(chunk, changes)
                changes = {}
                make_current(current)  # others ran meanwhile
            if encoded is None:
                # Nothing left of the customer (an erasure): a tombstone, so that
                # compaction removes the records before it.
                self.customers.data.pop(customer_id, None)
                self.leaders.discard(partition, customer_id)
            else:
                self.customers.data[customer_id] = encoded
                self.leaders.offer(partition, state)
            chunk.add(changelog, key, encoded, partition)
            for update in updates:  # after the state: see `_one_leader`
                chunk.add(updates_topic, key, update, to)
            after = contribution(state)
            for entry in add_change(changes, batch.before[customer_id], after):
                entry_key = entry.encode("utf-8")
                chunk.reserve(topic, self.partition_for(entry_key), estimate(entry_key, _CHANGE_ROOM))
            batch.before[customer_id] = after
            if chunk.largest() > limit - _CHANGES_MARGIN:
                # Room for the next customer's new entries on any changes partition.
                deliveries += await self._send_with_changes(chunk, changes)
                changes = {}
                make_current(current)
        # Updates of customers whose state did not change (re-sent after a takeover: see
        # `_score`), in the last chunk, so that they keep their place before the next batch's.
        for customer_id, updates in batch.updates.items():
            key = customer_id.encode("utf-8")
            to = default_partition(key, update_partitions)
            if not chunk.room_for(updates_topic, to, _size(key, updates), limit):
                deliveries += await self._send_with_changes(chunk, changes)
                changes = {}
            for update in updates:
                chunk.add(updates_topic, key, update, to)
        batch.updates.clear()
        deliveries += await self._send_with_changes(chunk, changes)
        return deliveries

    async def _one_leader(self, outbox: Outbox) -> bool:
        """Whether one broker leads every partition of the customers changelog and of
        `ppp-updates`: then a chunk of states takes their updates too, and a chunk leaves in
        one produce request (`send_together`), so a killed worker delivers a state with its
        updates or neither, and the updates need not wait for the states' acknowledgement
        (which cost about 50 ms of latency at p50, docs/benchmarks.md). On a cluster whose
        leaders differ, a batch's updates wait for its states' acknowledgement."""
        return await self._led_by_one(
            outbox, self.customers.changelog_topic.get_topic_name(), self.config.names.ppp_updates
        )

    async def _tables_last(self, outbox: Outbox, changelog: str, *outputs: str) -> Outbox | None:
        """Where a table's changelog records go relative to what they caused (`outputs`).

        Where one broker leads every partition of them all, a record and its outputs leave
        in one produce request (None: add the records to the chunk). Else they would be
        several requests, and a worker killed between them kept a join's record but lost
        its links (6 referral keys missing after a broker and a worker were SIGKILLed
        together on the three-node cluster): the records wait in the Outbox returned, sent
        once the outputs are acknowledged (`_after`). A crash between the two then sends
        the outputs again on redelivery, and loses none (README, "Tested on Apache Kafka")."""
        if await self._led_by_one(outbox, changelog, *outputs):
            return None
        return self._outbox()

    async def _led_by_one(self, outbox: Outbox, *topics: str) -> bool:
        """Whether one broker leads every partition of `topics`."""
        cluster = outbox.producer.client.cluster
        leaders = set()
        for topic in topics:
            for partition in range(await outbox.partition_count(topic)):
                leaders.add(cluster.leader_for_partition(TopicPartition(topic, partition)))
        return len(leaders) == 1 and None not in leaders and -1 not in leaders

    async def _send_with_changes(self, chunk: Outbox, changes: Mapping[str, Packed]) -> list[Awaitable[Any]]:
        topic = self.config.names.impact_changes
        for entry, change in changes.items():
            if change:
                key = entry.encode("utf-8")
                chunk.add(topic, key, encode_change(change), self.partition_for(key))
        return await send_together(chunk)

    def _outbox(self) -> Outbox:
        # Faust's Kafka producer itself: `_ensure_producer` is how Faust reaches it too.
        producer = cast(Any, self.app.producer)._ensure_producer()  # noqa: SLF001
        return Outbox(producer, self._partition_counts)

    def _reject(self, batch: _Batch, record: Any, origin: str, error: str) -> None:
        letter = dead_letter(
            topic=origin,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            error=error,
        )
        batch.out.add(self.config.names.dead_letters, record.key, orjson.dumps(letter))
        batch.tally.event(origin, "invalid")

    def _score(self, batch: _Batch, event: Event, origin: str, customer_id: str, partition: int) -> None:
        """Fold an event into the state of its person, `customer_id` (its own id, or the
        canonical id it was forwarded to)."""
        tally = batch.tally
        tally.lags[origin].append(max(0.0, (batch.received - event.occurred_at).total_seconds()))
        key = customer_id.encode("utf-8")
        state = self._state(batch, customer_id)
        # An alias's event was held to its own id's erasure on that id's partition.
        if batch.horizons and customer_id in batch.horizons and event.customer_id == customer_id:
            at = to_us(event.occurred_at)
            if at <= batch.horizons[customer_id]:
                # Erased before it came: as if it had never been sent (SPEC.md, "Erasure").
                tally.event(origin, "erased")
                return
        result = apply_event(state, event, self.config.rules)
        update = result.update(state)
        if result.duplicate:
            tally.event(origin, "duplicate")
        else:
            tally.event(origin, "processed")
            batch.changed[partition].add(customer_id)
        if self.first_since_takeover(customer_id) and update is None:
            # The state may come from a changelog record whose update a crash lost (queued
            # together, only one delivered). Send the current update again, same version,
            # so that the latest version is always out; a consumer that has it drops it.
            update = ppp_update(state)
        names = self.config.names
        if update is not None:
            batch.update(names.ppp_updates, customer_id, key, orjson.dumps(update))
            tally.update_sent(update["csat"], update["ppp"])
        sighting = sighting_for(event)
        if sighting is not None:
            # Links are between persons (SPEC.md, "Identity"); the join keeps the event's own
            # id too, which the erasure of a person gives its sightings back to.
            if event.customer_id != customer_id:
                sighting["customer_id"], sighting["id"] = customer_id, event.customer_id
            # Duplicates too: the join is idempotent, and a crash may have lost the first.
            batch.sightings.append(
                (customer_id, sighting["at"], sighting["share_id"].encode("utf-8"), orjson.dumps(sighting))
            )

    def _referred(self, batch: _Batch, message: dict[str, Any], partition: int) -> None:
        """A message from a share join to a customer: a referral link that names it as the
        referred one, a link taken back (an erasure), or a join's answer to an erasure."""
        kind = message.get("kind")
        if kind == "forgotten":
            self.eraser.answer(batch.erasure, message, partition)
            return
        referred = self.config.names.referred
        if kind == "renamed":
            to = self.merger.answer(batch.identity, message, partition)
            if to is not None:  # the person went on: see `Merger.forward_answer`
                self.merger.forward_answer(batch.identity, to, message)
            return
        customer_id = message["referred_id"]
        to = self.merger.pointer(batch.identity, customer_id, partition)
        if to is not None:
            _Host(self, batch).followed(customer_id)
            # A link for an id that stopped being canonical: its person's now.
            batch.out.add(referred, to.encode("utf-8"), orjson.dumps({**message, "referred_id": to}))
            return
        state = self._state(batch, customer_id)
        referral: tuple[str, str] | None = None
        horizon = batch.horizons.get(customer_id)
        if kind == "unlink":
            if horizon is not None and state.version == 0 and message["share_id"] not in state.referrals:
                return  # an erased customer's own link, taken back: nothing to keep of it
        else:
            # A link its own touchpoint's erasure overtook: the join retracts it when the
            # erasure reaches it, so it never counts. (Its time is read only for an erased customer.)
            if horizon is not None and to_us(datetime.fromisoformat(message["discovered_at"])) <= horizon:
                return
            # A link forwarded from an id that stopped being canonical may come after the share
            # join retracted it: one naming the person itself as referrer is a self-referral
            # now, which is no referral. Else its referrer and share channel become the
            # customer's impact keys.
            referrer = message["referrer_id"]
            if referrer != customer_id and referrer not in state.aliases:
                referral = (referrer, message["share_channel"])
        # A message delivered again, or older than one taken, changes nothing.
        if take_referral(state, message, referral):
            batch.changed[partition].add(customer_id)

    async def _erase(
        self,
        batch: _Batch,
        request: ErasureRequest,
        origin: str,
        partition: int,
        reached: list[str],
        quiet: bool,
    ) -> bool:
        """An erasure request for one id, on its partition (`stream.processing.erasure.eraser`): the customer's
        new state is stored like any change, after a tombstone on `ppp-updates`. `reached`:
        the ids the request reaches (more than its own for an id once part of an erased
        person). Returns whether the request is new."""
        customer_id = request.customer_id
        state = self._state(batch, customer_id)
        fresh, horizon, replacement = await self.eraser.erase(
            batch.erasure, request, state, partition, reached, quiet=quiet
        )
        batch.horizons[customer_id] = horizon
        if not quiet:  # part of a request counted before
            batch.tally.event(origin, "processed" if fresh else "duplicate")
        if replacement is not None or state.version == 0:
            # Nothing held (erased before, or before its events came): a tombstone all the
            # same, so that every erased customer's key ends in one (and again on a
            # redelivery, as a crash may have lost the first).
            self._restart(batch, customer_id, replacement, partition)
        return fresh

    def _restart(
        self, batch: _Batch, customer_id: str, replacement: CustomerState | None, partition: int
    ) -> None:
        """An erased customer's key: a tombstone on `ppp-updates` (after the updates before
        it), then the state its later events make, stored like any change, with its update."""
        names = self.config.names
        key = customer_id.encode("utf-8")
        batch.updates_apart(names.ppp_updates)
        if replacement is not None:
            self._state(batch, customer_id)  # its contribution before, noted
            batch.states[customer_id] = replacement
            batch.changed[partition].add(customer_id)
            batch.erasure.erased.add(customer_id)
        batch.out.add(names.ppp_updates, key, None)
        if replacement is not None and replacement.version:
            batch.out.add(names.ppp_updates, key, orjson.dumps(ppp_update(replacement)))

    def _left(self, batch: _Batch, person: str, event: Event) -> bool:
        """Whether an event forwarded to `person` is of an id no longer among its ids."""
        ids = self.merger.ids_of(batch.identity, person)
        return ids is None or event.customer_id not in ids

    async def _join_shares(self, batches: Mapping[TP, Sequence[Any]]) -> Awaitable[None]:
        """What one fetch brought from the share-joins topic: per partition, in offset order.

        A join and the links it makes must leave in one produce request, so that a killed
        worker delivers both or neither: sent apart, a crash lost a link or (awaited the
        other way round) repeated one. The joins of a batch go out in chunks, each one
        request (`send_together`): a chunk takes joins while every partition's records
        stay within one record batch. Across several brokers a chunk would be several
        requests: there the links go first and the joins' records once they are
        acknowledged (`_tables_last`), so a crash repeats a link rather than lose it. One
        join whose own records overflow a batch (a share with hundreds of waiting
        touchpoints) leaves in several requests.
        """
        names = self.config.names
        changelog = self.shares.changelog_topic.get_topic_name()
        limit = self._batch_bytes
        chunk = self._outbox()
        # Metadata known before queuing: no pause in the middle of a chunk.
        link_partitions = await chunk.partition_count(names.referral_links)
        referred_partitions = await chunk.partition_count(names.referred)
        tables = await self._tables_last(chunk, changelog, names.referral_links, names.referred)
        if tables is None and self._joins_completing is not None and not self._joins_joint_before:
            # The last batch's records were held back: this batch's must not overtake them.
            await self._joins_completing
        self._joins_joint_before = tables is None
        deliveries: list[Awaitable[Any]] = []
        links = self_referrals = 0
        for tp, records in batches.items():
            current = current_record(self.app, tp, records[0])
            for record in records:
                sighting = orjson.loads(record.value)
                share_id = sighting["share_id"]
                # The store itself, as written below (see `_state`).
                join: ShareJoin | None = self._held_join(share_id)
                if join is None:
                    join = ShareJoin(share_id)
                key = share_id.encode("utf-8")
                out: JoinRecords = []
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
                        (
                            names.referred,
                            default_partition(referred, referred_partitions),
                            referred,
                            to_referred,
                        )
                    )
                if join.is_empty():
                    self.shares.data.pop(share_id, None)
                    stored = None
                else:
                    self.shares.data[share_id] = join
                    stored = encode_join(join)
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
        completing = self._joins_completing = _after(deliveries, self._joins_completing, tables)
        return completing

    async def _sum_changes(self, batches: Mapping[TP, Sequence[Any]]) -> Awaitable[None]:
        """What one fetch brought from the impact-changes topic: each entry's owner adds the
        changes up and sends the entries that changed, once each per batch, to `impact`.

        An entry remembers the offset of the last change it took (`apply_change`), so a
        change delivered again after a crash is not counted twice; an entry's table record
        and its `impact` message leave in one request (`send_together`), so a crash never
        separates the sums from the message that publishes them. An entry left with no
        customer is kept (its version goes on) and its `impact` key gets a tombstone."""
        names = self.config.names
        changelog = self.impact.changelog_topic.get_topic_name()
        chunk = self._outbox()
        impact_partitions = await chunk.partition_count(names.impact)
        tables = await self._tables_last(chunk, changelog, names.impact)
        if tables is None and self._changes_completing is not None and not self._changes_joint_before:
            await self._changes_completing  # as in `_join_shares`
        self._changes_joint_before = tables is None
        currents: dict[int, faust.EventT[Any]] = {}
        changed: dict[str, tuple[int, ImpactEntry]] = {}
        for tp, records in batches.items():
            currents[tp.partition] = current_record(self.app, tp, records[0])
            for record in records:
                entry_key = bytes(record.key).decode("utf-8")
                entry: ImpactEntry | None = self.impact.data.get(entry_key)
                if entry is None:
                    entry = ImpactEntry()
                if apply_change(entry, decode_change(record.value), record.offset):
                    self.impact.data[entry_key] = entry
                    changed[entry_key] = (tp.partition, entry)
        deliveries: list[Awaitable[Any]] = []
        limit = self._batch_bytes
        for entry_key, (partition, entry) in changed.items():
            entry.version += 1
            key = entry_key.encode("utf-8")
            sums = unpack(entry.sums)
            record = encode_entry(entry, sums)
            message = orjson.dumps(entry_message(entry_key, sums, entry.version)) if sums[0] else None
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
        completing = self._changes_completing = _after(deliveries, self._changes_completing, tables)
        return completing
