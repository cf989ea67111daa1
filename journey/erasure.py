"""Erasure (SPEC.md, "Erasure"): which events a set of erasure requests removes.

A request erases every event of its customer whose `occurred_at` is at or before its
`requested_at`, whenever the event arrives; several requests for one customer erase up to
the latest of their times. So what survives is a function of the set of requests, like the
scores are of the set of events: any order, any duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from journey.customer import CustomerState, format_us, to_us
from journey.scoring import ScoringRules, apply_event
from schemas.events import ErasureRequest, Event, Incoming

__all__ = [
    "ErasureRecord",
    "Horizons",
    "Pending",
    "decode_record",
    "encode_record",
    "erase_state",
    "erased",
    "horizons",
    "log_message",
]

# customer_id -> the latest `requested_at` of its requests, in microseconds since the epoch.
Horizons = Mapping[str, int]


def horizons(requests: Iterable[ErasureRequest]) -> dict[str, int]:
    """Each customer's erasure horizon. A repeated `request_id` is a duplicate: the first
    one seen counts (as for an `event_id`)."""
    seen: set[str] = set()
    until: dict[str, int] = {}
    for request in requests:
        if request.request_id in seen:
            continue
        seen.add(request.request_id)
        at = to_us(request.requested_at)
        if at > until.get(request.customer_id, at - 1):
            until[request.customer_id] = at
    return until


def erased(event: Incoming, horizons: Horizons) -> bool:
    """Whether an erasure request removes `event`."""
    horizon = horizons.get(event.customer_id)
    return horizon is not None and to_us(event.occurred_at) <= horizon


@dataclass(slots=True)
class Pending:
    """A request whose `erasure-log` message waits for the share joins it asked to forget
    the customer (`awaiting`, by share_id), and what they retracted so far."""

    requested_at: int
    events_erased: int
    awaiting: set[str]
    retracted: list[dict[str, str]] = field(default_factory=list)
    # A person's erasure (SPEC.md, "Erasure"): the id asked for, and every id it reached.
    # Empty for a customer of one id, whose request names the record's own key.
    asked: str = ""
    ids: list[str] = field(default_factory=list)
    # Part of a request logged before (an erasure reaching one more id): logged under its
    # own request_id only if it took links back, so that every retraction is said.
    quiet: bool = False


# The horizon of an id whose record no request erased: one kept only so that a request is
# known again when it comes back (a person that came apart, SPEC.md "Erasure").
NOTHING_ERASED = -(2**62)


@dataclass(slots=True)
class ErasureRecord:
    """What a worker remembers of a customer's erasures (its `erasures` table entry): the
    horizon that drops late events, the request_ids seen, and the requests not yet logged."""

    horizon_us: int
    requests: set[str] = field(default_factory=set)
    pending: dict[str, Pending] = field(default_factory=dict)


def encode_record(record: ErasureRecord) -> bytes:
    return orjson.dumps(
        {
            "h": record.horizon_us,
            "r": sorted(record.requests),
            "p": {
                request_id: [p.requested_at, p.events_erased, sorted(p.awaiting), p.retracted]
                + ([p.asked, p.ids, p.quiet] if p.ids or p.quiet else [])
                for request_id, p in record.pending.items()
            },
        }
    )


def decode_record(raw: bytes) -> ErasureRecord:
    data = orjson.loads(raw)
    return ErasureRecord(
        data["h"],
        set(data["r"]),
        {
            request_id: Pending(at, erased_count, set(awaiting), retracted, *person)
            for request_id, (at, erased_count, awaiting, retracted, *person) in data["p"].items()
        },
    )


def erase_state(
    state: CustomerState, horizon_us: int, later: Iterable[Event], rules: ScoringRules
) -> tuple[CustomerState | None, int]:
    """The customer's state once the events at or before `horizon_us` are gone, and how many
    of the events `state` holds went.

    A state is a fold that cannot be unfolded, so what survives is folded again from the
    customer's events after the horizon (`later`, in any order and with any duplicates;
    earlier ones in it are skipped). The new state starts at version 1 with no previous
    PPP: it is a new customer state (SPEC.md). Its referral links stay as they were: the
    share joins retract those whose touchpoint was erased (`journey.referrals.forget`)."""
    fresh = CustomerState(state.customer_id)
    for event in later:
        if event.customer_id == state.customer_id and to_us(event.occurred_at) > horizon_us:
            apply_event(fresh, event, rules)
    gone = len(state.seen - fresh.seen)
    if fresh.version == 0:
        return None, gone
    fresh.version = 1
    fresh.previous_ppp = None
    fresh.referrals = dict(state.referrals)
    fresh.referral_seqs = dict(state.referral_seqs)
    return fresh, gone


def log_message(request_id: str, customer_id: str, pending: Pending, done_at_us: int) -> dict[str, Any]:
    """The `erasure-log` message of a request (SPEC.md, "Erasure")."""
    return {
        "request_id": request_id,
        "customer_id": pending.asked or customer_id,
        "ids": sorted(pending.ids) if pending.ids else [customer_id],
        "requested_at": format_us(pending.requested_at),
        "done_at": format_us(done_at_us),
        "events_erased": pending.events_erased,
        "links_retracted": sorted(
            pending.retracted, key=lambda link: (link["share_id"], link["referrer_id"], link["referred_id"])
        ),
    }
