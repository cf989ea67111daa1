"""The erasure of a person of several ids (SPEC.md, "Erasure", its last paragraph): a
request for any id reaches every id of the person, and the identify events that made it one
are erased with the rest, so that each id is a person of its own again.

    erasures ──► ingest (the asked id's partition) ─► its pointer ─► erase (C's partition)
    erase ─► PersonEraser.erase: every id's later events read again (its own partition)
       ├─► C: its horizon, its own later events folded again (or nothing: a tombstone)
       ├─► every other id: erased ─► PersonEraser.erased (its partition): its horizon, its
       │      pointer dropped, its own later events folded again
       └─► every share the person took part in: forget (every id) ─► forget_person
              ─► referred: forgotten ─► Eraser.answer ─► erasure-log (ids, once all answered)

Built for the person whose identify events are all at or before the request: then nothing
of it is left joined. A request that would leave part of a person joined (an identify
after `requested_at`) would split it, which this release does not carry out: it goes to
`dead-letters` with the reason rather than being half done (README, "Not built yet").
Forwarded events that reach C for an id the erasure gave back are sent back to the id
(`Pipeline`), so that each id's later events end in its own state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson

from journey.customer import CustomerState, to_us
from journey.erasure import Pending, erase_state
from journey.identity import IdRecord
from schemas.events import ErasureRequest
from stream.erasing import Eraser, ErasureWork
from stream.merging import IdentityWork, Merger, reaching

__all__ = [
    "SPLIT_REFUSED",
    "ErasureHost",
    "PersonEraser",
    "Restarts",
    "linked_within",
    "reach",
    "request_message",
]

SPLIT_REFUSED = (
    "customer_id: the person of this id has identify events after requested_at, so its "
    "erasure would split it in two, which this release does not carry out yet (README, "
    '"Not built yet"); send the request again after upgrading'
)


def linked_within(asked: str, identifies: list[list[Any]], at: int) -> set[str]:
    """The ids that the identify events at or before `at` link to `asked` (itself included)."""
    reached, edges = {asked}, [(str(i[2]), str(i[3])) for i in identifies if int(i[0]) <= at]
    grew = True
    while grew:
        grew = False
        for one, other in edges:
            if (one in reached) != (other in reached):
                reached |= {one, other}
                grew = True
    return reached


def reach(record: IdRecord | None, request: ErasureRequest) -> list[str]:
    """The ids that a request for an id, once part of an erased person, reaches through the
    identify events erased with it (those at or before `requested_at`), sorted."""
    erased = None if record is None else record.erased
    if erased is None:
        return [request.customer_id]
    return sorted(linked_within(request.customer_id, erased["identifies"], to_us(request.requested_at)))


class Restarts(Protocol):
    """What the pipeline does with an erased id's state: a tombstone on `ppp-updates`, then
    the state folded again from its later events (None: nothing left), with its update."""

    def __call__(self, customer_id: str, replacement: CustomerState | None, partition: int) -> None: ...


def request_message(request: ErasureRequest, *, quiet: bool = False) -> dict[str, Any]:
    """A request, forwarded along the asked id's pointer to its person's canonical id."""
    message: dict[str, Any] = {
        "kind": "erase",
        "request": {
            "request_id": request.request_id,
            "customer_id": request.customer_id,
            "requested_at": request.requested_at.isoformat(),
        },
    }
    if quiet:
        message["quiet"] = True
    return message


class ErasureHost(Protocol):
    """What routing a request needs of the pipeline's batch."""

    def state(self, customer_id: str) -> CustomerState: ...

    def restart(self, customer_id: str, replacement: CustomerState | None, partition: int) -> None: ...

    def reject(self, letter: Any, origin: str, error: str) -> None: ...

    def count(self, origin: str, outcome: str) -> None: ...

    def erased_to(self, customer_id: str, horizon: int) -> None: ...

    def followed(self, customer_id: str) -> None: ...

    async def erase_one(
        self, request: ErasureRequest, origin: str, partition: int, reached: list[str], quiet: bool
    ) -> bool: ...


class PersonEraser:
    """A worker's part in erasing persons of several ids, on top of its `Eraser` (requests,
    horizons, joins' answers, `erasure-log`) and `Merger` (persons, pointers)."""

    def __init__(self, eraser: Eraser, merger: Merger, partition_for: Callable[[bytes], int]) -> None:
        self.eraser = eraser
        self.merger = merger
        self.partition_for = partition_for

    async def route(
        self,
        work: ErasureWork,
        identity: IdentityWork,
        host: ErasureHost,
        request: ErasureRequest,
        letter: Any,
        at_id: str,
        partition: int,
        *,
        quiet: bool = False,
    ) -> None:
        """A request on the partition of `at_id`: the id it names, or one it was forwarded to.
        On along a pointer; carried out for a person of several ids, or for one id (which
        then reaches the ids an earlier erasure gave back); or, forwarded to a person erased
        meanwhile, back to the id it names. `letter`: what a refusal's dead letter shows."""
        origin = self.eraser.names.erasures
        held = self.merger.record(identity, at_id, partition)
        if held is not None and held.to is not None:
            if at_id == request.customer_id:
                host.followed(at_id)  # counted where it is carried out
            self.merger.send(identity, held.to, request_message(request, quiet=quiet))
            return
        if held is not None and (len(held.ids) > 1 or held.identifies):
            state = host.state(at_id)
            outcome, horizon = await self.erase(
                work, identity, request, at_id, held, state, partition, host.restart, quiet=quiet
            )
            if outcome == "refused":
                host.reject(letter, origin, SPLIT_REFUSED)
                return
            host.erased_to(at_id, horizon)
            if not quiet:
                host.count(origin, "processed" if outcome == "erased" else "duplicate")
            return
        if at_id != request.customer_id:
            known = self.eraser.record(work, at_id, partition)
            if known is None or request.request_id not in known.requests:
                self.merger.send(identity, request.customer_id, request_message(request, quiet=quiet))
            elif not quiet:
                host.count(origin, "duplicate")
            return
        reached = reach(held, request)
        if await host.erase_one(request, origin, partition, reached, quiet):
            for other in reached:
                if other != at_id:
                    # The erased identify events of its old person link it within the
                    # request: each id erases its own events up to the same time.
                    message = reaching(other, to_us(request.requested_at), request.request_id)
                    self.merger.send(identity, other, message)

    async def erase(
        self,
        work: ErasureWork,
        identity: IdentityWork,
        request: ErasureRequest,
        canonical: str,
        person: IdRecord,
        state: CustomerState,
        partition: int,
        restart: Restarts,
        *,
        quiet: bool = False,
    ) -> tuple[str, int]:
        """The request on the partition of the person's canonical id: ("refused", 0),
        ("duplicate", horizon) or ("erased", horizon)."""
        at = to_us(request.requested_at)
        known = self.eraser.record(work, canonical, partition)
        if known is not None and request.request_id in known.requests:
            return "duplicate", known.horizon_us
        if any(int(identify[0]) > at for identify in person.identifies):
            return "refused", 0
        ids = sorted(person.ids)
        # An id an identify event names whose person is still on its way here (pulled, not
        # absorbed yet) is reached too: the erasure goes to it as a request of its own.
        reached = sorted(linked_within(request.customer_id, person.identifies, at) | person.ids)
        _, horizon = self.eraser.take(work, canonical, request, partition)
        # Every id's events, read again from its own partition: what survives is folded
        # again per id, and the count of what went is what the person held less that.
        later = {
            customer_id: await self.eraser.later_events(customer_id, self.partition_for(customer_id.encode()))
            for customer_id in ids
        }
        held = len(state.seen) + sum(len(seen) for seen in state.alias_seen.values())
        kept = {
            (customer_id, event.event_id)
            for customer_id, events in later.items()
            for event in events
            if to_us(event.occurred_at) > at
            and event.event_id
            in (state.seen if customer_id == canonical else state.alias_seen.get(customer_id, ()))
        }
        replacement, _ = erase_state(state, horizon, later[canonical], self.eraser.rules)
        # Nothing left of it: an empty state, which is stored as a tombstone.
        restart(canonical, replacement or CustomerState(canonical), partition)
        # The canonical id is a person of its own now; merges still waiting for their
        # share joins' answers keep their place, so that their `merges` messages go out.
        erased = {"ids": reached, "identifies": person.identifies, "horizon": at}
        identity.records[partition][canonical] = IdRecord(
            ids={canonical}, pending=person.pending, erased=erased
        )
        for customer_id in ids:
            if customer_id != canonical:
                message = {
                    "kind": "erased",
                    "from": canonical,
                    "request_id": request.request_id,
                    "requested_at": request.requested_at.isoformat(),
                    "person": erased,
                }
                identity.messages.append((customer_id.encode("utf-8"), orjson.dumps(message)))
        for customer_id in reached:
            if customer_id not in person.ids:
                self.merger.send(identity, customer_id, reaching(customer_id, at, request.request_id))
        awaiting = self.eraser.ask_joins(work, state, canonical, at, request.request_id, ids)
        pending = Pending(at, held - len(kept), awaiting, asked=request.customer_id, ids=reached, quiet=quiet)
        self.eraser.pend(work, canonical, request.request_id, pending, partition)
        return "erased", horizon

    async def erased(
        self,
        work: ErasureWork,
        identity: IdentityWork,
        customer_id: str,
        message: dict[str, Any],
        partition: int,
        restart: Restarts,
    ) -> int:
        """One id of an erased person, on its own partition: it takes the request's horizon,
        stops pointing at the person, and its later events make its state. Returns the horizon."""
        request = ErasureRequest(
            request_id=message["request_id"],
            customer_id=customer_id,
            requested_at=message["requested_at"],
        )
        _, horizon = self.eraser.take(work, customer_id, request, partition)
        record = self.merger.record(identity, customer_id, partition)
        # Whatever id it points at, its pointer leads to the person that was erased (one
        # that moved on, to another canonical id, left its own pointer behind).
        if record is not None and record.to is not None:
            identity.records[partition][customer_id] = IdRecord(ids={customer_id}, erased=message["person"])
        later = await self.eraser.later_events(customer_id, partition)
        # Its referral links come from the share joins again, as its touchpoints are given back.
        replacement, _ = erase_state(CustomerState(customer_id), horizon, later, self.eraser.rules)
        restart(customer_id, replacement or CustomerState(customer_id), partition)
        return horizon
