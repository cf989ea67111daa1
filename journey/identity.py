"""Identity (SPEC.md, "Identity: one person, many ids"): which ids are one person, which of
them is its canonical id, and the state of a person from the states of its parts.

Ids linked by identify events, directly or through other ids, are one person; its canonical
id is the `customer_id` of its earliest identify event. Both are functions of the set of
identify events, like every score of the set of events.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from journey.customer import CustomerState, format_us, to_us
from journey.decimals import EXACT, ZERO
from journey.decimals import round_cents as _round
from journey.scoring import ScoringRules, csat_of, fold_windows
from schemas.events import ErasureRequest, Identify

__all__ = [
    "IdRecord",
    "IdentifyKey",
    "PendingMerge",
    "Persons",
    "decode_id_record",
    "encode_id_record",
    "identify_edge",
    "identify_key",
    "merge_states",
    "merges_message",
    "person_horizons",
    "same_identify",
]

# The order of identify events: occurred_at (microseconds), event_id, customer_id. The least
# of a person's names its canonical id.
IdentifyKey = tuple[int, str, str]


def identify_key(event: Identify) -> IdentifyKey:
    return (to_us(event.occurred_at), event.event_id, event.customer_id)


@dataclass(slots=True)
class Persons:
    """A union-find over ids: each root holds its person's earliest identify and ids."""

    parent: dict[str, str] = field(default_factory=dict)
    earliest: dict[str, IdentifyKey] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    # (customer_id, event_id) of the identify events taken: a repeat is a duplicate.
    seen: set[tuple[str, str]] = field(default_factory=set)

    def root(self, customer_id: str) -> str:
        parent = self.parent
        root = customer_id
        while parent.get(root, root) != root:
            root = parent[root]
        while customer_id != root:  # path compression
            customer_id, parent[customer_id] = parent[customer_id], root
        return root

    def add(self, event: Identify) -> bool:
        """Take one identify event; False for a duplicate."""
        mark = (event.customer_id, event.event_id)
        if mark in self.seen:
            return False
        self.seen.add(mark)
        key = identify_key(event)
        ends = []
        for customer_id in (event.customer_id, event.anonymous_id):
            if customer_id not in self.parent:
                self.parent[customer_id] = customer_id
                self.members[customer_id] = {customer_id}
            ends.append(self.root(customer_id))
        one, other = ends
        if one != other:
            # The smaller set joins the larger: finds stay short.
            if len(self.members[one]) < len(self.members[other]):
                one, other = other, one
            self.parent[other] = one
            self.members[one] |= self.members.pop(other)
            if other in self.earliest:
                earlier = self.earliest.pop(other)
                if one not in self.earliest or earlier < self.earliest[one]:
                    self.earliest[one] = earlier
        if one not in self.earliest or key < self.earliest[one]:
            self.earliest[one] = key
        return True

    def canonical(self, customer_id: str) -> str:
        """The canonical id of the person `customer_id` belongs to (itself if alone)."""
        if customer_id not in self.parent:
            return customer_id
        return self.earliest[self.root(customer_id)][2]

    def ids(self, customer_id: str) -> set[str]:
        """Every id of the person `customer_id` belongs to."""
        if customer_id not in self.parent:
            return {customer_id}
        return self.members[self.root(customer_id)]

    def mapping(self) -> dict[str, str]:
        """id -> canonical id, for every id an identify event names."""
        return {customer_id: self.canonical(customer_id) for customer_id in self.parent}

    def people(self) -> dict[str, set[str]]:
        """canonical id -> its aliases, for every person of more than one id."""
        return {self.earliest[root][2]: ids - {self.earliest[root][2]} for root, ids in self.members.items()}


def person_horizons(identifies: Sequence[Identify], requests: Iterable[ErasureRequest]) -> dict[str, int]:
    """Each id's erasure horizon when a request reaches every id that the identify events at
    or before its `requested_at` link to its customer (SPEC.md, "Erasure"). A repeated
    `request_id` is a duplicate; the first one counts.

    Requests are taken in time order while identify events are added in time order, so each
    request sees exactly the persons of its time: one pass, not one graph per request."""
    unique: dict[str, ErasureRequest] = {}
    for request in requests:
        unique.setdefault(request.request_id, request)
    ordered = sorted(unique.values(), key=lambda request: to_us(request.requested_at))
    events = sorted(identifies, key=identify_key)
    persons = Persons()
    taken = 0
    until: dict[str, int] = {}
    for request in ordered:
        at = to_us(request.requested_at)
        while taken < len(events) and to_us(events[taken].occurred_at) <= at:
            persons.add(events[taken])
            taken += 1
        for customer_id in persons.ids(request.customer_id):
            if at > until.get(customer_id, at - 1):
                until[customer_id] = at
    return until


def _published_base(into: str, states: Sequence[CustomerState]) -> CustomerState | None:
    for state in states:
        if state.customer_id == into:
            return state
    return None


def _merge_referrals(merged: CustomerState, states: Iterable[CustomerState]) -> None:
    """Of each share, what the part that took the newest message of its join says
    (`journey.referrals.take_referral`); of equal numbers (0: links sent before numbering),
    a link before none, then the greatest, so that the order of the parts does not matter."""
    best: dict[str, tuple[int, bool, tuple[str, ...]]] = {}
    for state in states:
        for share_id in state.referrals.keys() | state.referral_seqs.keys():
            referral = state.referrals.get(share_id)
            candidate = (state.referral_seqs.get(share_id, 0), referral is not None, referral or ())
            known = best.get(share_id)
            if known is None or candidate > known:
                best[share_id] = candidate
    for share_id, (seq, _, taken) in best.items():
        if seq:
            merged.referral_seqs[share_id] = seq
        if taken:
            merged.referrals[share_id] = (taken[0], taken[1])


def merge_states(
    into: str,
    states: Sequence[CustomerState],
    rules: ScoringRules,
    *,
    cause: tuple[str, str] = ("", "identify"),
) -> tuple[CustomerState, bool]:
    """The state of the union of the events of `states`, under the id `into`, and whether
    its published scores differ from those last published under `into` (an update is due).

    Exact for states of disjoint sets of ids, which is how a person's parts are kept: each
    id's events live in one state. Every window keeps what its own `T` needs, and the
    union's `T` is the latest of theirs, so what one window dropped is outside the union's
    window too; counts and sums add up; sets and maxima join. (States sharing an event
    cannot be merged exactly: nothing in a fold says what one event contributed.) Scores are
    computed again; `version` goes on from the state published under `into`, if any."""
    parts = [state for state in states if state.version]
    merged = CustomerState(into)
    # A state of version 0 holds referral links whose customer's events are yet to come.
    _merge_referrals(merged, states)
    if not parts:
        return merged, False
    for state in parts:
        for customer_id, seen in ((state.customer_id, state.seen), *state.alias_seen.items()):
            if seen:
                merged.seen_of(customer_id).update(seen)
        merged.aliases |= state.aliases | state.alias_seen.keys() | {state.customer_id}
        merged.surveys += state.surveys
        merged.purchases += state.purchases
        merged.refunds += state.refunds
        merged.moments = [a + b for a, b in zip(merged.moments, state.moments, strict=True)]
        merged.window_surveys += state.window_surveys
        merged.window_survey_sum = EXACT.add(merged.window_survey_sum, state.window_survey_sum)
        if state.latest_survey is not None and (
            merged.latest_survey is None or state.latest_survey > merged.latest_survey
        ):
            merged.latest_survey = state.latest_survey
        merged.sentiments += state.sentiments
        merged.sentiment_sum = EXACT.add(merged.sentiment_sum, state.sentiment_sum)
        merged.lifetime_net = EXACT.add(merged.lifetime_net, state.lifetime_net)
        merged.recent_money += state.recent_money
        merged.recent_sum = EXACT.add(merged.recent_sum, state.recent_sum)
        merged.campaigns |= state.campaigns
        merged.channels |= state.channels
        merged.joined |= state.joined
        merged.smot_failures += state.smot_failures
        merged.last_failure_us = _latest(merged.last_failure_us, state.last_failure_us)
        merged.last_good_us = _latest(merged.last_good_us, state.last_good_us)
    merged.aliases.discard(into)
    merged.alias_seen.pop(into, None)
    merged.first_us = min(state.first_us for state in parts)
    merged.last_us = max(state.last_us for state in parts)
    for heap in (merged.window_surveys, merged.sentiments, merged.recent_money):
        heapq.heapify(heap)
    fold_windows(merged, rules)
    merged.cltv_365d = _round(max(merged.recent_sum, ZERO))
    csat = csat_of(merged, rules)
    cltv = _round(max(merged.lifetime_net, ZERO))
    base = _published_base(into, parts)
    if base is not None:
        merged.version, merged.previous_ppp = base.version, base.previous_ppp
        merged.csat, merged.cltv, merged.ppp = base.csat, base.cltv, base.ppp
        merged.cause_event_id, merged.cause_type = base.cause_event_id, base.cause_type
        if csat == base.csat and cltv == base.cltv:
            return merged, False
    merged.previous_ppp = None if base is None else base.ppp
    merged.csat, merged.cltv = csat, cltv
    merged.ppp = _round(EXACT.multiply(csat, cltv))
    merged.version = 1 if base is None else base.version + 1
    merged.cause_event_id, merged.cause_type = cause
    return merged, True


def _latest(one: int | None, other: int | None) -> int | None:
    if one is None:
        return other
    if other is None:
        return one
    return max(one, other)


@dataclass(slots=True)
class PendingMerge:
    """A merge whose `merges` message waits for the share joins it asked to rename the
    merged ids (`awaiting`, by share_id), and the links they retracted so far."""

    merged_ids: list[str]
    merged_at: int
    awaiting: set[str]
    retracted: list[dict[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class IdRecord:
    """What a worker keeps of one id of a person of several ids (its `persons` table entry).

    An id that stopped being canonical keeps only `to`, the id its person went to, so that
    its late events, links and lookups follow the person. A canonical id keeps its person:
    every id (itself included), the identify events that joined them, and its merges whose
    `merges` message waits for the share joins."""

    to: str | None = None
    ids: set[str] = field(default_factory=set)
    # [occurred_at_us, event_id, customer_id, anonymous_id] of each identify event.
    identifies: list[list[Any]] = field(default_factory=list)
    pending: dict[str, PendingMerge] = field(default_factory=dict)
    # The person this id was part of until its erasure (`stream.processing.erasure.persons`): its ids,
    # the identify events erased with it, and the horizon every id took. A later request
    # for one of the ids still reaches those that the erased identify events link to it.
    erased: dict[str, Any] | None = None

    def holds(self, identify: Sequence[Any]) -> bool:
        """Whether this person took `identify` (`same_identify`)."""
        return any(same_identify(known, identify) for known in self.identifies)

    def add_identify(self, identify: list[Any]) -> bool:
        """Take one identify event; False for one taken before (`holds`)."""
        if self.holds(identify):
            return False
        self.identifies.append(list(identify))
        return True

    def take(self, other: IdRecord) -> None:
        """Join another person's record into this one."""
        self.ids |= other.ids
        for identify in other.identifies:
            self.add_identify(identify)
        for merge_id, pending in other.pending.items():
            self.pending.setdefault(merge_id, pending)
        if other.erased is not None:
            self.remember_erased(
                other.erased["identifies"], int(other.erased["horizon"]), other.erased["ids"]
            )

    def remember_erased(
        self, identifies: list[list[Any]], horizon: int, ids: list[str] | None = None
    ) -> bool:
        """Keep identify events that an erasure took (and the ids it reached): they still
        link their ids for any later request at or after their time, as in
        `person_horizons`. Returns whether any of them is new."""
        erased = self.erased or {"ids": [], "identifies": [], "horizon": horizon}
        known = erased["identifies"]
        fresh = [list(i) for i in identifies if not any(same_identify(i, taken) for taken in known)]
        erased["identifies"] = [*known, *fresh]
        erased["ids"] = sorted(set(erased["ids"]) | set(ids or ()))
        erased["horizon"] = max(int(erased["horizon"]), horizon)
        self.erased = erased
        return bool(fresh)

    def erased_identifies(self) -> list[list[Any]]:
        """The identify events erasures took that touched this person (see `remember_erased`)."""
        return [] if self.erased is None else list(self.erased["identifies"])

    def canonical(self) -> str | None:
        """The customer_id of the earliest identify event (None before one)."""
        if not self.identifies:
            return None
        return str(min((at, event_id, customer_id) for at, event_id, customer_id, _ in self.identifies)[2])


def encode_id_record(record: IdRecord) -> bytes:
    if record.to is not None:
        return orjson.dumps({"to": record.to})
    held: dict[str, Any] = {
        "ids": sorted(record.ids),
        "identifies": record.identifies,
        "pending": {
            merge_id: [p.merged_ids, p.merged_at, sorted(p.awaiting), p.retracted]
            for merge_id, p in record.pending.items()
        },
    }
    if record.erased is not None:
        held["erased"] = record.erased
    return orjson.dumps(held)


def decode_id_record(raw: bytes) -> IdRecord:
    data = orjson.loads(raw)
    if "to" in data:
        return IdRecord(to=data["to"])
    return IdRecord(
        ids=set(data["ids"]),
        identifies=data["identifies"],
        pending={
            merge_id: PendingMerge(merged_ids, merged_at, set(awaiting), retracted)
            for merge_id, (merged_ids, merged_at, awaiting, retracted) in data["pending"].items()
        },
        erased=data.get("erased"),
    )


def same_identify(edge: Sequence[Any], other: Sequence[Any]) -> bool:
    """Whether two identify edges (`identify_edge`) are one identify event: the same
    event_id of the same customer_id (SPEC.md, "Event ids"), whatever carried them."""
    return str(edge[1]) == str(other[1]) and str(edge[2]) == str(other[2])


def identify_edge(event: Identify) -> list[Any]:
    """An identify event as a person's record keeps it: [occurred_at_us, event_id,
    customer_id, anonymous_id]."""
    return [to_us(event.occurred_at), event.event_id, event.customer_id, event.anonymous_id]


def merges_message(canonical: str, record: IdRecord, pending: PendingMerge) -> dict[str, Any]:
    """The `merges` message of one merge (SPEC.md, "Identity")."""
    return {
        "customer_id": canonical,
        "merged_ids": sorted(pending.merged_ids),
        "aliases": sorted(record.ids - {canonical}),
        "merged_at": format_us(pending.merged_at),
        "links_retracted": sorted(
            pending.retracted, key=lambda link: (link["share_id"], link["referrer_id"], link["referred_id"])
        ),
    }
