"""The erasure of a person of several ids (SPEC.md, "Erasure", its last paragraph): a
request for any id reaches every id that the identify events at or before its time link to
it, and those identify events are erased with the rest. The person comes apart; its later
identify events join again what they join.

    erasures ──► ingest (the asked id's partition) ─► its pointer ─► erase (C's partition)
    erase ─► PersonEraser.erase: every id's later events read again (its own partition)
       ├─► C: its horizon if reached, its own later events folded again (or a tombstone)
       ├─► every other id: erased ─► PersonEraser.erased (its partition): its horizon if
       │      reached, its pointer dropped, its own later events folded again
       ├─► the surviving identify events: link (behind the erased messages) ─► Merger
       └─► every share the person took part in: forget (every id) ─► forget_person
              ─► referred: forgotten ─► Eraser.answer ─► erasure-log (ids, once all answered)

Erased identify events still link their ids for later requests (as `person_horizons` does
in replay): every id of the person keeps them, and an id passes its horizon along them
(`reaching`) only when the horizon grew or a link was new to it, so that this ends.
Forwarded events that reach C for an id the erasure gave back are sent back to the id
(`Pipeline`), so that each id's later events end in its own state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from journey.customer import CustomerState, to_us
from journey.erasure import NOTHING_ERASED, Pending, erase_state
from journey.identity import IdRecord
from schemas.events import ErasureRequest, Event
from stream.processing.erasure.eraser import Eraser, ErasureWork
from stream.processing.identity.merging import IdentityWork, Merger, reaching

__all__ = [
    "ErasureHost",
    "PersonEraser",
    "Restarts",
    "linked_within",
    "reach",
    "request_message",
]


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


def _erased_events(
    state: CustomerState,
    canonical: str,
    ids: list[str],
    reached: set[str],
    later: Mapping[str, list[Event]],
    at: int,
) -> int:
    """How many of the events a person's state holds an erasure takes: those of the ids it
    reaches, less the ones after `at` (`later`, read again from each id's partition)."""

    def seen(customer_id: str) -> set[str]:
        return state.seen if customer_id == canonical else state.alias_seen.get(customer_id, set())

    kept = sum(len(seen(customer_id)) for customer_id in ids if customer_id not in reached) + len(
        {
            (customer_id, event.event_id)
            for customer_id in reached & later.keys()
            for event in later[customer_id]
            if to_us(event.occurred_at) > at and event.event_id in seen(customer_id)
        }
    )
    held = sum(len(seen(customer_id)) for customer_id in ids)
    return held - kept


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


def request_message(
    request: ErasureRequest, *, quiet: bool = False, edge: list[Any] | None = None
) -> dict[str, Any]:
    """A request, forwarded along the asked id's pointer to its person's canonical id (with
    the erased identify event that brought it, if any)."""
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
    if edge is not None:
        message["identify"] = edge
    return message


class ErasureHost(Protocol):
    """What routing a request needs of the pipeline's batch."""

    def state(self, customer_id: str) -> CustomerState: ...

    def restart(self, customer_id: str, replacement: CustomerState | None, partition: int) -> None: ...

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
        at_id: str,
        partition: int,
        *,
        quiet: bool = False,
        edge: list[Any] | None = None,
    ) -> None:
        """A request on the partition of `at_id`: the id it names, or one it was forwarded to.
        On along a pointer; carried out for a person of several ids, or for one id (which
        then reaches the ids an earlier erasure gave back); or, forwarded to a person erased
        meanwhile, back to the id it names. `edge`: the erased identify event that brought
        the request here (`reaching`), remembered by the id it reaches."""
        origin = self.eraser.names.erasures
        held = self.merger.record(identity, at_id, partition)
        if held is not None and held.to is not None:
            if at_id == request.customer_id:
                host.followed(at_id)  # counted where it is carried out
            self.merger.send(identity, held.to, request_message(request, quiet=quiet, edge=edge))
            return
        if held is not None and (len(held.ids) > 1 or held.identifies):
            state = host.state(at_id)
            outcome, horizon = await self.erase(
                work, identity, request, at_id, held, state, partition, host.restart, quiet=quiet, edge=edge
            )
            if horizon != NOTHING_ERASED:
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
        learnt = edge is not None and self.remember(
            identity, at_id, edge, to_us(request.requested_at), partition
        )
        held = self.merger.record(identity, at_id, partition)
        before = self.eraser.horizon(at_id, work, partition)
        if not await host.erase_one(request, origin, partition, reach(held, request), quiet):
            return
        now = self.eraser.horizon(at_id, work, partition)
        if now is None or held is None or not (learnt or before is None or now > before):
            return  # nothing new to pass on: what it knows went on before
        # The erased identify events it knows link it, up to its horizon now, to ids that
        # the request whose time that is reached too (as in `person_horizons`): each takes
        # it. Only a horizon that grew or a link newly known is passed on, so it ends.
        for other in sorted(linked_within(at_id, held.erased_identifies(), now) - {at_id}):
            self.merger.send(identity, other, reaching(other, now, request.request_id))

    def took(
        self,
        identity: IdentityWork,
        at_id: str,
        other: str,
        identify: list[Any],
        horizon: int,
        partition: int,
    ) -> None:
        """An identify event that the erasure of `at_id` took (it is at or before its
        horizon): `at_id` remembers it, and the erasure goes, up to the same horizon, to the
        id on its other side, which remembers it too."""
        cause = f"identify:{identify[1]}"
        self.remember(identity, at_id, identify, horizon, partition, cause)
        self.merger.send(identity, other, reaching(other, horizon, cause, identify))

    def remember(
        self,
        identity: IdentityWork,
        customer_id: str,
        edge: list[Any],
        horizon: int,
        partition: int,
        cause: str = "",
    ) -> bool:
        """An id keeps an identify event that an erasure took (it still links the id for
        later requests); returns whether it is new to it. An id that points at a person of
        several ids sends it there, where requests for the id are carried out, as an
        erasure of its own up to its horizon (`cause`: what took the identify event)."""
        record = self.merger.record(identity, customer_id, partition)
        if record is not None and record.to is not None:
            self.merger.send(identity, record.to, reaching(customer_id, horizon, cause, edge))
            return False
        record = record or IdRecord(ids={customer_id})
        learnt = record.remember_erased([edge], horizon)
        identity.records[partition][customer_id] = record
        return learnt

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
        edge: list[Any] | None = None,
    ) -> tuple[str, int]:
        """The request on the partition of the person's canonical id: ("duplicate", horizon)
        or ("erased", horizon), the canonical id's horizon (`NOTHING_ERASED` if the request
        did not reach it).

        The ids that the identify events at or before the request link to the id it names
        are erased up to its time, with those identify events. The person comes apart: each
        of its ids takes its own surviving events back (read again from its own partition),
        and the person's other identify events are sent again (`link`), so that the persons
        they make come together as any do."""
        at = to_us(request.requested_at)
        known = self.eraser.record(work, canonical, partition)
        if known is not None and request.request_id in known.requests:
            return "duplicate", known.horizon_us
        ids = sorted(person.ids)
        # Ids an identify event names whose person is still on its way here (pulled, not yet
        # absorbed) are reached too: the erasure goes to them as a request of their own.
        brought = [] if edge is None else [edge]
        reached = linked_within(
            request.customer_id, person.identifies + person.erased_identifies() + brought, at
        )
        gone = [i for i in person.identifies if int(i[0]) <= at and i[2] in reached]
        before = None if known is None else known.horizon_us
        grows = canonical in reached and (before is None or at > before)
        if quiet and not gone and not (reached & person.ids) - {canonical} and not grows:
            return "erased", self._stays(
                work, identity, request, canonical, person, partition, brought, before
            )
        gone += brought
        _, horizon = self.eraser.take(work, canonical, request, partition, erase=canonical in reached)
        later = {
            customer_id: await self.eraser.later_events(customer_id, self.partition_for(customer_id.encode()))
            for customer_id in ids
        }
        erased_events = _erased_events(state, canonical, ids, reached, later, at)
        replacement, _ = erase_state(state, horizon, later[canonical], self.eraser.rules)
        # Nothing left of it: an empty state, which is stored as a tombstone.
        restart(canonical, replacement or CustomerState(canonical), partition)
        # Merges still waiting for their share joins' answers keep their place, so that
        # their `merges` messages go out. The erased identify events still link their ids
        # for later requests; every id of the person keeps them.
        left = IdRecord(ids={canonical}, pending=person.pending, erased=person.erased)
        left.remember_erased(gone, at, sorted(reached))
        identity.records[partition][canonical] = left
        self._take_apart(identity, request, canonical, person, left, reached, gone)
        awaiting = self.eraser.ask_joins(work, state, canonical, at, request.request_id, ids, sorted(reached))
        pending = Pending(
            at, erased_events, awaiting, asked=request.customer_id, ids=sorted(reached), quiet=quiet
        )
        self.eraser.pend(work, canonical, request.request_id, pending, partition)
        return "erased", horizon

    def _stays(
        self,
        work: ErasureWork,
        identity: IdentityWork,
        request: ErasureRequest,
        canonical: str,
        person: IdRecord,
        partition: int,
        brought: list[list[Any]],
        before: int | None,
    ) -> int:
        """One id's erasure passing on to the next (`reaching`) that changes nothing here:
        the person stays as it is, or two persons linked by an erased identify event would
        take each other apart and join again without end. Returns the horizon."""
        at = to_us(request.requested_at)
        _, horizon = self.eraser.take(work, canonical, request, partition, erase=False)
        if brought and person.remember_erased(brought, at):
            identity.records[partition][canonical] = person
            if before is not None:  # its own horizon goes along the link new to it too
                outside = linked_within(canonical, person.erased_identifies(), before) - person.ids
                for customer_id in sorted(outside):
                    self.merger.send(identity, customer_id, reaching(customer_id, before, request.request_id))
        return horizon

    def _take_apart(
        self,
        identity: IdentityWork,
        request: ErasureRequest,
        canonical: str,
        person: IdRecord,
        left: IdRecord,
        reached: set[str],
        gone: list[list[Any]],
    ) -> None:
        """Each other id of the person hears it is on its own (`erased`), the ids outside it
        that the request reaches get it, and the surviving identify events link again."""
        at = to_us(request.requested_at)
        for customer_id in sorted(person.ids):
            if customer_id != canonical:
                message = {
                    "kind": "erased",
                    "from": canonical,
                    "request_id": request.request_id,
                    "requested_at": request.requested_at.isoformat(),
                    "erase": customer_id in reached,
                    "person": left.erased,
                }
                identity.messages.append((customer_id.encode("utf-8"), orjson.dumps(message)))
        for customer_id in sorted(reached - person.ids):
            self.merger.send(identity, customer_id, reaching(customer_id, at, request.request_id))
        for identify in person.identifies:
            if identify not in gone:  # behind the `erased` messages of the ids it names
                self.merger.send(identity, str(identify[2]), {"kind": "link", "identify": identify})

    async def erased(
        self,
        work: ErasureWork,
        identity: IdentityWork,
        customer_id: str,
        message: dict[str, Any],
        partition: int,
        restart: Restarts,
    ) -> int:
        """One id of a person that came apart, on its own partition: it takes the request's
        horizon if the request reached it, stops pointing at the person, and its own
        surviving events make its state. Returns its horizon."""
        request = ErasureRequest(
            request_id=message["request_id"],
            customer_id=customer_id,
            requested_at=message["requested_at"],
        )
        _, horizon = self.eraser.take(work, customer_id, request, partition, erase=message.get("erase", True))
        record = self.merger.record(identity, customer_id, partition)
        # Whatever id it points at, its pointer leads to the person that came apart (one
        # that moved on, to another canonical id, left its own pointer behind).
        if record is not None and record.to is not None:
            identity.records[partition][customer_id] = IdRecord(ids={customer_id}, erased=message["person"])
        later = await self.eraser.later_events(customer_id, partition)
        # Its referral links come from the share joins again, as its touchpoints are given back.
        replacement, _ = erase_state(CustomerState(customer_id), horizon, later, self.eraser.rules)
        restart(customer_id, replacement or CustomerState(customer_id), partition)
        return horizon
