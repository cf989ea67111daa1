"""Identity in a worker (SPEC.md, "Identity"): identify events, persons' states coming
together on the canonical id's partition, and the `merges` message once the share joins
have renamed the merged ids.

    identities ──► ingest (C's partition) ─► link ─► the person of C ─┬─ A already in it: settle
                                                                       └─► pull (A's partition)
    pull ─► the person of A ─► absorb: its record and state ─► the person of C
    absorb ─► merge_states ─► customers table, ppp-updates ─► rename ─► share-joins
                └─ an earlier identify names another id: the whole person moves there (absorb)
    share-joins: rename ─► referral-links (links made again), referred: unlink, renamed
    renamed ─► Merger.answer ─► merges (when every join has answered)

Every message between partitions goes on the re-keying topic, keyed by the id it is for,
so that it keeps its place among the events forwarded to that id: an id that stopped being
canonical keeps a pointer (`IdRecord.to`), and whatever reaches it later (events, links,
messages, lookups) follows the pointer. What decides lives in the core (`journey.identity`,
`journey.referrals.rename`); this module moves it through topics and tables, and the
pipeline sends a batch's `IdentityWork` in the request that takes the states it changed.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import faust
import orjson

from journey.customer import CustomerState, decode_state, encode_state, format_us, to_us
from journey.identity import (
    IdRecord,
    PendingMerge,
    decode_id_record,
    encode_id_record,
    identify_edge,
    merge_states,
    merges_message,
)
from journey.referrals import JoinResult, ShareJoin, rename
from journey.scoring import ScoringRules
from schemas.events import Identify
from stream.kafka.outbox import Outbox, PlacedRecords, default_partition
from stream.kafka.topics import ORIGIN_HEADER, TopicNames
from stream.processing.stores import as_changed, store_get, store_records

__all__ = ["IDENTITY_ORIGIN", "IdentityWork", "Merger", "StateHost", "reaching"]

# The origin header of identity messages on the re-keying topic.
IDENTITY_ORIGIN = "journey-identity"


class StateHost(Protocol):
    """What the merger needs of the pipeline's batch: customers' states, as the batch holds them."""

    def state(self, customer_id: str) -> CustomerState: ...

    def replace(self, state: CustomerState, partition: int) -> None: ...

    def publish(self, state: CustomerState) -> None: ...

    def tombstone(self, customer_id: str) -> None: ...

    def followed(self, customer_id: str) -> None: ...

    def settled(self, customer_id: str) -> None: ...


@dataclass(slots=True)
class IdentityWork:
    """What one input batch did to persons: id records by partition, identity messages
    (keyed by the id they are for), renames for the share joins, and `merges` messages."""

    records: defaultdict[int, dict[str, IdRecord]] = field(default_factory=lambda: defaultdict(dict))
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    renames: list[tuple[bytes, bytes]] = field(default_factory=list)
    merges: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Ids whose state a merge changed (those whose state left included): stored first, in
    # the request that takes the records.
    touched: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.records or self.messages or self.renames or self.merges)


@dataclass(slots=True)
class _Here:
    """An identity message being handled: the batch's work and states, the id it is for,
    that id's record (as this batch has it) and partition."""

    work: IdentityWork
    host: StateHost
    id: str
    record: IdRecord
    partition: int

    def keep(self) -> None:
        """The record changed: it is stored with the batch."""
        self.work.records[self.partition][self.id] = self.record


def reaching(
    customer_id: str, horizon_us: int, cause: str, identify: list[Any] | None = None
) -> dict[str, Any]:
    """An erasure that reaches one more id up to its horizon (SPEC.md, "Erasure"): an
    identify event erased with one of its ids takes it to the other one (`cause`
    "identify:<event_id>"), and a request for an id once part of an erased person takes it
    to the ids the erased identify events link to it (`cause`: the request_id). Part of a
    request logged before, it is carried out "quiet": logged under its own request_id only
    if it takes links back. `identify`: the erased identify event that links the two ids,
    for the reached id to remember (`PersonEraser.remember`)."""
    request_id = f"{cause}>{customer_id}"
    if len(request_id) > 128:  # the longest request_id there is
        request_id = "reach-" + hashlib.sha256(request_id.encode("utf-8")).hexdigest()
    message: dict[str, Any] = {
        "kind": "erase",
        "quiet": True,
        "request": {
            "request_id": request_id,
            "customer_id": customer_id,
            "requested_at": format_us(horizon_us),
        },
    }
    if identify is not None:
        message["identify"] = identify
    return message


def _now_us() -> int:
    return to_us(datetime.now(UTC))


class Merger:
    """A worker's persons: its `persons` table and what it sends."""

    def __init__(self, table: Any, names: TopicNames, rules: ScoringRules) -> None:
        self.table = table  # id -> encoded IdRecord (a Faust table, raw values)
        self._held = store_get(table)
        self.names = names
        self.rules = rules

    # -- reading

    def record(self, work: IdentityWork, customer_id: str, partition: int) -> IdRecord | None:
        """The id's record, as this batch has changed it."""
        return as_changed(work.records, partition, customer_id, self._held, decode_id_record)

    def pointer(self, work: IdentityWork, customer_id: str, partition: int) -> str | None:
        """Where the person of an id that stopped being canonical went, or None."""
        # The store's own get (a dict's for the memory store): asking whether the table is
        # empty first would count a RocksDB store's keys.
        record = self.record(work, customer_id, partition)
        return None if record is None else record.to

    def ids_of(self, work: IdentityWork, customer_id: str) -> set[str] | None:
        """Every id of the person whose canonical id is `customer_id`, or None."""
        for records in work.records.values():
            if customer_id in records:
                return records[customer_id].ids or None
        held: bytes | None = self._held(customer_id)
        return None if held is None else decode_id_record(held).ids or None

    # -- messages

    def send(self, work: IdentityWork, to: str, message: dict[str, Any]) -> None:
        """An identity message for the id `to`, on the re-keying topic."""
        work.messages.append((to.encode("utf-8"), orjson.dumps(message)))

    def forward_answer(self, work: IdentityWork, to: str, answer: dict[str, Any]) -> None:
        """A join's answer reached an id whose person went on to `to`, taking the pending
        merge the answer is for. It follows on the re-keying topic, behind the message
        that carried the merge: sent on `referred` it could come first, find no such merge
        and be dropped as a repeat, and the merge never finished (its `merges` message,
        and the links it retracted, never went out: seen after a takeover)."""
        self.send(work, to, {**answer, "customer_id": to})

    def identify(self, work: IdentityWork, host: StateHost, event: Identify, partition: int) -> None:
        """An identify event on its customer_id's partition: the person of that id takes it."""
        identify = identify_edge(event)
        self.handle(work, host, event.customer_id, {"kind": "link", "identify": identify}, partition)

    def handle(
        self, work: IdentityWork, host: StateHost, customer_id: str, message: dict[str, Any], partition: int
    ) -> None:
        """An identity message for `customer_id`, on its partition."""
        kind = message["kind"]
        record = self.record(work, customer_id, partition)
        if record is not None and record.to is not None:
            if not (kind == "absorb" and customer_id in message["ids"]):
                host.followed(customer_id)
                self.send(work, record.to, message)  # the person went on: follow it
                return
            record = None  # the person moves back to this id (an earlier identify names it)
        here = _Here(work, host, customer_id, record or IdRecord(ids={customer_id}), partition)
        if kind == "link":
            self._link(here, message["identify"])
        elif kind == "pull":
            if message["to"] not in here.record.ids:  # else one person already (a redelivery)
                self._leave(here, message["to"], [here.id], message["cause"], puller=message.get("identify"))
        elif kind == "absorb":
            # The absorbed person's record, decoded once for both questions.
            coming = decode_id_record(base64.b64decode(message["record"]))
            if not self._erased_cause(here, message) and not self._astray(here, message, coming):
                self._absorb(here, message, coming)
        elif kind == "renamed":
            # Forwarded (`forward_answer`), maybe along several pointers: for this id now.
            self.answer(work, {**message, "customer_id": customer_id}, partition)

    def _link(self, here: _Here, identify: list[Any]) -> None:
        record = here.record
        if not record.add_identify(identify):
            return  # taken before
        here.keep()
        other = identify[3] if identify[3] not in record.ids else identify[2]
        if other not in record.ids:
            # The other id's person joins this one: it sends itself here.
            pull = {
                "kind": "pull",
                "to": here.id,
                "cause": identify[1],
                "at": identify[0],
                "identify": identify,
            }
            self.send(here.work, other, pull)
        canonical = record.canonical() or here.id
        if canonical != here.id:
            # This identify is the person's earliest: it names another of its ids.
            self._leave(here, canonical, [here.id], identify[1])
            return
        state = here.host.state(here.id)
        if state.version > 0 and state.aliases != record.ids - {here.id}:
            state.aliases = record.ids - {here.id}
            here.host.replace(state, here.partition)

    def _erased_cause(self, here: _Here, message: dict[str, Any]) -> bool:
        """A person that was coming here when this id's person was erased, pulled by one of
        the identify events erased with it: it goes back where it came from, and the erasure
        reaches it up to the same horizon (the identify linked it within it)."""
        erased = here.record.erased
        source = message["from"]
        if erased is None or source in here.record.ids:
            return False
        if message["cause"] not in {identify[1] for identify in erased["identifies"]}:
            return False
        self.send(here.work, source, {**message, "from": source, "merged_ids": []})
        cause = f"identify:{message['cause']}"
        self.send(here.work, source, reaching(source, int(erased["horizon"]), cause))
        return True

    def _astray(self, here: _Here, message: dict[str, Any], coming: IdRecord) -> bool:
        """A person pulled by an identify event that this person does not hold: it followed
        the pointer of the id that pulled it, which an erasure has since taken out of this
        person (the id's own `absorb` came back, or its `erased` message is on its way). It
        goes back to that id, where the identify event is."""
        identify = message.get("identify")
        if identify is None or here.id in (identify[2], identify[3]) or here.id in message["ids"]:
            return False  # at the id that pulled it, or a person coming back to its own id
        if here.record.holds(identify) or coming.holds(identify):
            return False
        puller = identify[2] if identify[3] in message["ids"] else identify[3]
        if puller in message["ids"]:
            return False
        self.send(here.work, puller, message)
        return True

    def _leave(
        self,
        here: _Here,
        to: str,
        merged_ids: list[str],
        cause: str,
        state: CustomerState | None = None,
        *,
        puller: list[Any] | None = None,
    ) -> None:
        """This id's person (record and state) goes to `to`; this id keeps a pointer.
        `puller`: the identify event that pulled it, if it did."""
        host = here.host
        state = host.state(here.id) if state is None else state
        held = state.holds_anything()
        absorb = {
            "kind": "absorb",
            "from": here.id,
            "merged_ids": merged_ids,
            "cause": cause,
            "ids": sorted(here.record.ids),
            "record": base64.b64encode(encode_id_record(here.record)).decode("ascii"),
            "state": base64.b64encode(encode_state(state)).decode("ascii") if held else None,
        }
        if puller is not None:
            absorb["identify"] = puller
        self.send(here.work, to, absorb)
        here.work.records[here.partition][here.id] = IdRecord(to=to)
        if host.state(here.id).version > 0:
            host.tombstone(here.id)  # a state was published under this id
        host.replace(CustomerState(here.id), here.partition)

    def _absorb(self, here: _Here, message: dict[str, Any], coming: IdRecord) -> None:
        record, host = here.record, here.host
        source = message["from"]
        if source in record.ids and source != here.id:
            here.host.settled(here.id)  # absorbed before (a redelivery)
            return
        record.take(coming)
        record.ids.add(here.id)
        here.keep()
        parts = [host.state(here.id)]
        if message["state"] is not None:
            parts.append(decode_state(base64.b64decode(message["state"])))
        merged_ids = [customer_id for customer_id in message["merged_ids"] if customer_id != here.id]
        merged, updated = merge_states(here.id, parts, self.rules, cause=(message["cause"], "identify"))
        merged.aliases = record.ids - {here.id}
        canonical = record.canonical() or here.id
        if canonical != here.id:
            # An earlier identify names another id of the person: all of it moves there.
            self._leave(here, canonical, [*merged_ids, here.id], message["cause"], merged)
            return
        host.replace(merged, here.partition)
        if updated:
            host.publish(merged)
        if merged_ids:
            self._merged(here, merged_ids, parts[1:])

    def _merged(self, here: _Here, merged_ids: list[str], absorbed: list[CustomerState]) -> None:
        """A merge is done here: the share joins rename the merged ids, then `merges` says so."""
        record = here.record
        shares = sorted({share_id for state in absorbed for share_id in state.joined})
        now = _now_us()
        merge_id = f"{here.id}<{','.join(sorted(merged_ids))}@{now}"
        pending = PendingMerge(sorted(merged_ids), now, set(shares))
        # A person's record only grows: its size orders two renames of one id.
        version = len(record.ids) + len(record.identifies)
        for share_id in shares:
            message = {
                "kind": "rename",
                "share_id": share_id,
                "ids": sorted(record.ids),
                "new": here.id,
                "version": version,
                "merge": merge_id,
            }
            here.work.renames.append((share_id.encode("utf-8"), orjson.dumps(message)))
        if shares:
            record.pending[merge_id] = pending
        else:
            message_out = merges_message(here.id, record, pending)
            here.work.merges.append((here.id.encode("utf-8"), orjson.dumps(message_out)))

    def answer(self, work: IdentityWork, answer: dict[str, Any], partition: int) -> str | None:
        """A share join has renamed a merge's ids: once every join has, `merges` goes out.
        Returns where to forward the answer if the person went on, else None."""
        here = answer["customer_id"]
        record = self.record(work, here, partition)
        if record is not None and record.to is not None:
            return record.to
        pending = None if record is None else record.pending.get(answer["merge"])
        if record is None or pending is None or answer["share_id"] not in pending.awaiting:
            return None  # an answer delivered again
        pending.awaiting.discard(answer["share_id"])
        pending.retracted += answer["retracted"]
        if not pending.awaiting:
            del record.pending[answer["merge"]]
            work.merges.append((here.encode("utf-8"), orjson.dumps(merges_message(here, record, pending))))
        work.records[partition][here] = record
        return None

    def rename_in_join(
        self, join: ShareJoin, message: dict[str, Any], referred_partitions: int, out: PlacedRecords
    ) -> JoinResult:
        """The merged ids leave a share join for their canonical id: each retracted link is
        taken back from its referred person and the merge hears what was retracted. Links
        made again are the caller's to send, as new ones."""
        renamed = rename(join, message["ids"], message["new"], message["version"])
        referred = self.names.referred

        def send(to: str, body: dict[str, Any]) -> None:
            key = to.encode("utf-8")
            out.append((referred, default_partition(key, referred_partitions), key, orjson.dumps(body)))

        for link in renamed.retracted:
            # To the referred person as the join knows it now, unless the join still links
            # it (a link made again, or one under the id it goes by): numbered, the newest wins.
            to = join.person(link["referred_id"])
            if to not in join.linked:
                send(to, join.numbered({"kind": "unlink", "share_id": link["share_id"], "referred_id": to}))
        answer = {
            "kind": "renamed",
            "merge": message["merge"],
            "customer_id": message["new"],
            "share_id": join.share_id,
            "retracted": renamed.retracted,
        }
        send(message["new"], answer)
        return JoinResult(renamed.links, 0)

    async def add_to(
        self, chunk: Outbox, work: IdentityWork, current: Mapping[int, faust.EventT[Any]]
    ) -> int:
        """The records and messages of a batch, into the request that takes the states they
        changed (`current`: Faust's current event of each partition). Returns the number
        of `merges` messages."""
        names = self.names
        await store_records(chunk, self.table, work.records, encode_id_record, current)
        topics: list[tuple[str, list[tuple[bytes, bytes]]]] = [
            (names.rekeyed, work.messages),
            (names.share_joins, work.renames),
            (names.merges, work.merges),
        ]
        for topic, messages in topics:
            if messages:
                count = await chunk.partition_count(topic)
                for key, value in messages:
                    headers = [(ORIGIN_HEADER, IDENTITY_ORIGIN.encode())] if topic == names.rekeyed else None
                    chunk.add(topic, key, value, default_partition(key, count), headers=headers)
        return len(work.merges)
