"""Erasure in a worker (SPEC.md, "Erasure"): requests on the customer's partition, the
share joins' forgetting, and the `erasure-log` message once every join has answered.

    erasures ──► ingest ─► Eraser.erase ─► customers table (tombstone, or folded again)
                   │          ├─► erasures table (the horizon: later events are dropped)
                   │          └─► forget ─► share-joins ─► Eraser.forget_in_join
                   │                                          ├─► referred: unlink (keys taken back)
                   └──────────── referred: forgotten ◄────────┘
                      └─► Eraser.answer ─► erasure-log (when every join has answered)

What decides lives in the core (`journey.erasure`, `journey.referrals.forget`); this
module moves it through topics and tables. The pipeline (`stream.processing.pipeline`) sends what an
input batch's erasures changed (`ErasureWork`) in the same request as the customers'
states, so that a crash keeps all of it or none.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
import orjson

from journey.customer import CustomerState, to_us
from journey.erasure import (
    NOTHING_ERASED,
    ErasureRecord,
    Pending,
    decode_record,
    encode_record,
    erase_state,
    log_message,
)
from journey.referrals import JoinResult, ShareJoin, forget, forget_person
from journey.scoring import ScoringRules
from schemas.decode import InvalidEvent, parse_event
from schemas.events import ErasureRequest, Event, Identify
from stream.kafka.outbox import Outbox, PlacedRecords, default_partition
from stream.kafka.reading import read_partitions
from stream.kafka.topics import TopicNames, origin_of
from stream.processing.stores import as_changed, store_get, store_records

__all__ = ["Eraser", "ErasureWork"]


@dataclass(slots=True)
class ErasureWork:
    """What the erasures of one input batch changed: erasure records by partition, the
    customers erased, messages to the share joins (forget) and to `erasure-log`."""

    records: defaultdict[int, dict[str, ErasureRecord]] = field(default_factory=lambda: defaultdict(dict))
    erased: set[str] = field(default_factory=set)
    forgets: list[tuple[bytes, bytes]] = field(default_factory=list)
    logs: list[tuple[bytes, bytes]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.records)


def _log(request_id: str, customer_id: str, pending: Pending) -> tuple[bytes, bytes]:
    """An `erasure-log` message, keyed by the id the request asked for."""
    message = log_message(request_id, customer_id, pending, to_us(datetime.now(UTC)))
    return message["customer_id"].encode("utf-8"), orjson.dumps(message)


class Eraser:
    """A worker's erasures: its `erasures` table and what it sends."""

    def __init__(
        self,
        table: Any,
        names: TopicNames,
        rules: ScoringRules,
        kafka: Mapping[str, Any],
        max_event_bytes: int,
        *,
        stable_ends: bool = False,
    ) -> None:
        self.table = table  # customer_id -> encoded ErasureRecord (a Faust table, raw values)
        # In transactions, events are read again only up to the last stable offset.
        self.stable_ends = stable_ends
        self._held = store_get(table)  # the store itself, as `add_to` writes it
        self.names = names
        self.rules = rules
        self.kafka = kafka
        self.max_event_bytes = max_event_bytes

    def horizon(self, customer_id: str, work: ErasureWork | None = None, partition: int = 0) -> int | None:
        """The customer's erasure horizon, if it has one: its events at or before it are
        dropped. With `work`, as this batch has it: a request earlier in the batch counts."""
        if work is not None:
            record = self.record(work, customer_id, partition)
            return None if record is None else record.horizon_us
        held: bytes | None = self._held(customer_id)
        return None if held is None else decode_record(held).horizon_us

    def record(self, work: ErasureWork, customer_id: str, partition: int) -> ErasureRecord | None:
        """The customer's erasure record, as this batch has changed it."""
        return as_changed(work.records, partition, customer_id, self._held, decode_record)

    async def erase(
        self,
        work: ErasureWork,
        request: ErasureRequest,
        state: CustomerState,
        partition: int,
        reached: list[str] | None = None,
        *,
        quiet: bool = False,
    ) -> tuple[bool, int, CustomerState | None]:
        """One request on its customer's partition: (whether it is new, the horizon, the
        state that replaces `state`, or None when nothing in it is erased).

        The state loses every event at or before the horizon: what is left is an empty state
        (the pipeline writes a tombstone) or one folded again from the later events on the
        input topics. Each share join the customer took part in is asked to forget its
        sightings, and the `erasure-log` message waits for all of their answers (`answer`).
        Handled again (a redelivery after a crash), a request erases what is still there to
        erase and is logged once."""
        customer_id = request.customer_id
        at = to_us(request.requested_at)
        fresh, horizon = self.take(work, customer_id, request, partition)
        replacement: CustomerState | None = None
        gone = 0
        awaiting: set[str] = set()
        if state.version > 0 and state.first_us <= horizon:
            if state.last_us <= horizon:
                gone = len(state.seen)
            else:
                later = await self.later_events(customer_id, partition)
                replacement, gone = erase_state(state, horizon, later, self.rules)
            replacement = replacement or CustomerState(customer_id)
            work.erased.add(customer_id)
            awaiting = self.ask_joins(work, state, customer_id, horizon, request.request_id)
        if fresh:
            pending = Pending(at, gone, awaiting, quiet=quiet)
            if reached is not None and reached != [customer_id]:
                pending.asked, pending.ids = customer_id, reached
            self.pend(work, customer_id, request.request_id, pending, partition)
        return fresh, horizon, replacement

    def take(
        self,
        work: ErasureWork,
        customer_id: str,
        request: ErasureRequest,
        partition: int,
        *,
        erase: bool = True,
    ) -> tuple[bool, int]:
        """The id's erasure record takes a request that reaches it (the id it names, or
        another id of its person): (whether it is new, the id's horizon now). Without
        `erase`, the request is only known again (an id of a person that came apart that
        the request did not reach)."""
        at = to_us(request.requested_at)
        record = self.record(work, customer_id, partition) or ErasureRecord(at if erase else NOTHING_ERASED)
        fresh = request.request_id not in record.requests
        if fresh:
            # A request_id seen before is a duplicate, whatever time it carries: the first
            # one counts, as in `journey.erasure.horizons`.
            record.requests.add(request.request_id)
            if erase:
                record.horizon_us = max(record.horizon_us, at)
        work.records[partition][customer_id] = record
        return fresh, record.horizon_us

    def ask_joins(
        self,
        work: ErasureWork,
        state: CustomerState,
        customer_id: str,
        horizon: int,
        request_id: str,
        ids: list[str] | None = None,
        erased: list[str] | None = None,
    ) -> set[str]:
        """Every share join the state took part in is asked to forget the customer's
        sightings up to `horizon`; returns the shares. With `ids`, a person that comes
        apart: every id takes its sightings back, and those of `erased` up to `horizon` go."""
        awaiting = set(state.joined)
        for share_id in sorted(awaiting):
            message: dict[str, Any] = {
                "kind": "forget",
                "share_id": share_id,
                "customer_id": customer_id,
                "horizon": horizon,
                "request_id": request_id,
            }
            if ids is not None:
                message["ids"], message["erased"] = ids, erased if erased is not None else ids
            work.forgets.append((share_id.encode("utf-8"), orjson.dumps(message)))
        return awaiting

    def pend(
        self, work: ErasureWork, customer_id: str, request_id: str, pending: Pending, partition: int
    ) -> None:
        """A request carried out on `customer_id`'s partition: logged at once, or once every
        share join it asked has answered (`answer`)."""
        if pending.awaiting:
            record = self.record(work, customer_id, partition)
            assert record is not None  # the request's own, taken before
            record.pending[request_id] = pending
            work.records[partition][customer_id] = record
        elif not pending.quiet:
            work.logs.append(_log(request_id, customer_id, pending))

    def answer(self, work: ErasureWork, answer: dict[str, Any], partition: int) -> None:
        """A share join has forgotten an erased customer: once every join it asked has
        answered, the request's `erasure-log` message goes out with the links retracted."""
        customer_id = answer["customer_id"]
        record = self.record(work, customer_id, partition)
        pending = None if record is None else record.pending.get(answer["request_id"])
        if record is None or pending is None or answer["share_id"] not in pending.awaiting:
            return  # an answer delivered again
        pending.awaiting.discard(answer["share_id"])
        pending.retracted += answer["retracted"]
        if not pending.awaiting:
            del record.pending[answer["request_id"]]
            if pending.retracted or not pending.quiet:
                work.logs.append(_log(answer["request_id"], customer_id, pending))
        work.records[partition][customer_id] = record

    async def add_to(
        self, chunk: Outbox, work: ErasureWork, current: Mapping[int, faust.EventT[Any]]
    ) -> None:
        """The records, forgets and log messages of a batch, into the request that takes
        the erased customers' states (`current`: Faust's current event of each partition)."""
        names = self.names
        await store_records(chunk, self.table, work.records, encode_record, current)
        joins = await chunk.partition_count(names.share_joins)
        for key, message in work.forgets:
            chunk.add(names.share_joins, key, message, default_partition(key, joins))
        logs = await chunk.partition_count(names.erasure_log)
        for key, message in work.logs:
            chunk.add(names.erasure_log, key, message, default_partition(key, logs))

    def forget_in_join(
        self, join: ShareJoin, message: dict[str, Any], referred_partitions: int, out: PlacedRecords
    ) -> JoinResult:
        """An erased customer's sightings leave a share join: each retracted link is taken
        back from its referred customer, and the erased customer's partition gets the answer
        it waits for before it logs the erasure. Links made again are the caller's to send,
        as new ones."""
        customer_id = message["customer_id"]
        if "ids" in message:  # a person of several ids (`stream.processing.erasure.persons`)
            forgotten = forget_person(join, message["ids"], message["horizon"], message.get("erased"))
        else:
            forgotten = forget(join, customer_id, message["horizon"])
        referred = self.names.referred
        for link in forgotten.retracted:
            key = link["referred_id"].encode("utf-8")
            unlink = join.numbered(
                {"kind": "unlink", "share_id": link["share_id"], "referred_id": link["referred_id"]}
            )
            out.append((referred, default_partition(key, referred_partitions), key, orjson.dumps(unlink)))
        answer = {
            "kind": "forgotten",
            "request_id": message["request_id"],
            "customer_id": customer_id,
            "share_id": join.share_id,
            "retracted": forgotten.retracted,
        }
        key = customer_id.encode("utf-8")
        out.append((referred, default_partition(key, referred_partitions), key, orjson.dumps(answer)))
        return JoinResult(forgotten.links, 0)

    async def later_events(self, customer_id: str, partition: int) -> list[Event]:
        """The customer's events on its partition of the input topics (and the re-keyed
        one), read again from the beginning: what an erasure that leaves later events
        folds again. Events still elsewhere come later and fold in as usual: a state is a
        function of the set of events, so reading some twice changes nothing."""
        names = self.names
        wanted = customer_id.encode("utf-8")
        events: list[Event] = []
        topics = [*names.inputs, names.rekeyed]
        async for record in read_partitions(self.kafka, topics, partition, stable=self.stable_ends):
            if record.value is None or wanted not in record.value:
                continue
            kind = names.inputs.get(origin_of(record, names.rekeyed))
            if kind is None:
                continue
            try:
                event = parse_event(
                    record.value,
                    expected_type=kind,
                    currencies=self.rules.rates,
                    max_bytes=self.max_event_bytes,
                )
            except InvalidEvent:
                continue
            if event.customer_id == customer_id and not isinstance(event, Identify):
                events.append(event)
        return events
