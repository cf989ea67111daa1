"""Erasure (SPEC.md, "Erasure"): which events a set of erasure requests removes.

A request erases every event of its customer whose `occurred_at` is at or before its
`requested_at`, whenever the event arrives; several requests for one customer erase up to
the latest of their times. So what survives is a function of the set of requests, like the
scores are of the set of events: any order, any duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from journey.customer import to_us
from schemas.events import ErasureRequest, Event

__all__ = ["Horizons", "erased", "horizons"]

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


def erased(event: Event, horizons: Horizons) -> bool:
    """Whether an erasure request removes `event`."""
    horizon = horizons.get(event.customer_id)
    return horizon is not None and to_us(event.occurred_at) <= horizon
