"""An erasure request's whole path in a worker: one id's, a person's across its ids, and
the share joins' answers.

    erasure request ─► on its customer's partition ─► PersonEraser.route ─► ErasureHandlers.erase
    erase (re-keying topic) ─► a request forwarded along a person's ids ─► likewise
    erased ─► a person taken apart: each id folded again (`PersonEraser.erased`)
    forgotten (a share join's answer) ─► Eraser.answer ─► erasure-log

An identify event or a pull that an id's erasure took is the identity handlers' to notice
(`stream.processing.identity.handlers`); they hand it to `PersonEraser.took`.
"""

from __future__ import annotations

import orjson

from journey.customer import CustomerState
from journey.scoring import ppp_update
from schemas.decode import parse_erasure
from schemas.events import ErasureRequest
from stream.processing.batch import Arrival, Batch, Config
from stream.processing.customers import Customers, States
from stream.processing.erasure.eraser import Eraser
from stream.processing.erasure.persons import PersonEraser

__all__ = ["ErasureHandlers"]


class ErasureHandlers:
    """The handlers of erasure requests, a person's erase and erased messages, and the
    share joins' forgotten answers."""

    def __init__(
        self, config: Config, customers: Customers, eraser: Eraser, person_eraser: PersonEraser
    ) -> None:
        self.config = config
        self.customers = customers
        self.eraser = eraser
        self.person_eraser = person_eraser

    async def request(self, batch: Batch, arrival: Arrival) -> None:
        """An erasure request on its customer's partition."""
        request: ErasureRequest = arrival.value
        await self.person_eraser.route(
            batch.erasure,
            batch.identity,
            _Erasures(self, batch),
            request,
            request.customer_id,
            arrival.partition,
        )

    async def erase(self, batch: Batch, arrival: Arrival) -> None:
        """A request forwarded to one more id (along a person's pointer, or reaching an id an
        erased identify event links), keyed by that id."""
        message = arrival.value
        await self.person_eraser.route(
            batch.erasure,
            batch.identity,
            _Erasures(self, batch),
            parse_erasure(orjson.dumps(message["request"])),
            bytes(arrival.record.key).decode("utf-8"),
            arrival.partition,
            quiet=bool(message.get("quiet")),
            edge=message.get("identify"),
        )

    async def erased(self, batch: Batch, arrival: Arrival) -> None:
        """An id of a person that an erasure took apart: folded again from its own events."""
        person = bytes(arrival.record.key).decode("utf-8")
        horizon = await self.person_eraser.erased(
            batch.erasure,
            batch.identity,
            person,
            arrival.value,
            arrival.partition,
            _Erasures(self, batch).restart,
        )
        batch.horizons[person] = horizon

    def forgotten(self, batch: Batch, arrival: Arrival) -> None:
        """A share join's answer to an erasure: counted towards its `erasure-log` message."""
        self.eraser.answer(batch.erasure, arrival.value, arrival.partition)

    async def erase_one(
        self,
        batch: Batch,
        request: ErasureRequest,
        origin: str,
        partition: int,
        reached: list[str],
        quiet: bool,
    ) -> bool:
        """An erasure request for one id, on its partition (`Eraser.erase`): the customer's
        new state is stored like any change, after a tombstone on `ppp-updates`. `reached`:
        the ids the request reaches (more than its own for an id once part of an erased
        person). Returns whether the request is new."""
        customer_id = request.customer_id
        state = self.customers.state(batch, customer_id)
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
            self.restart(batch, customer_id, replacement, partition)
        return fresh

    def restart(
        self, batch: Batch, customer_id: str, replacement: CustomerState | None, partition: int
    ) -> None:
        """An erased customer's key: a tombstone on `ppp-updates` (after the updates before
        it), then the state its later events make, stored like any change, with its update."""
        topic = self.config.names.ppp_updates
        key = customer_id.encode("utf-8")
        batch.updates_apart(topic)
        if replacement is not None:
            self.customers.state(batch, customer_id)  # its contribution before, noted
            batch.states[customer_id] = replacement
            batch.changed[partition].add(customer_id)
            batch.erasure.erased.add(customer_id)
        batch.out.add(topic, key, None)
        if replacement is not None and replacement.version:
            batch.out.add(topic, key, orjson.dumps(ppp_update(replacement)))


class _Erasures:
    """The batch as `PersonEraser` routes and carries out requests in it (`ErasureHost`)."""

    __slots__ = ("batch", "handlers")

    def __init__(self, handlers: ErasureHandlers, batch: Batch) -> None:
        self.handlers = handlers
        self.batch = batch

    def state(self, customer_id: str) -> CustomerState:
        return self.handlers.customers.state(self.batch, customer_id)

    def restart(self, customer_id: str, replacement: CustomerState | None, partition: int) -> None:
        self.handlers.restart(self.batch, customer_id, replacement, partition)

    def count(self, origin: str, outcome: str) -> None:
        self.batch.tally.event(origin, outcome)

    def erased_to(self, customer_id: str, horizon: int) -> None:
        self.batch.horizons[customer_id] = horizon

    def followed(self, customer_id: str) -> None:
        States(self.handlers.customers, self.batch).followed(customer_id)

    async def erase_one(
        self, request: ErasureRequest, origin: str, partition: int, reached: list[str], quiet: bool
    ) -> bool:
        return await self.handlers.erase_one(self.batch, request, origin, partition, reached, quiet)
