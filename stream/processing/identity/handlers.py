"""An identify event's whole path in a worker, and the identity messages between partitions.

    identify event ─► its customer_id's erasure took it? ─► the erasure goes to its other id
                  └─► Merger.identify ─► link, pull, absorb, merges (`merging`)
    identity message (re-keying topic) ─► a pull its id's erasure took? ─► likewise
                                      └─► Merger.handle
    renamed (a share join's answer) ─► Merger.answer ─► merges, or on to where the person went

A person's erasure messages (`erase`, `erased`) travel on the same topic, under the same
origin, and are handled in `stream.processing.erasure.handlers`.
"""

from __future__ import annotations

from journey.customer import to_us
from journey.identity import identify_edge
from schemas.events import Identify
from stream.processing.batch import Arrival, Batch
from stream.processing.customers import Customers, States
from stream.processing.erasure.eraser import Eraser
from stream.processing.erasure.persons import PersonEraser
from stream.processing.identity.merging import Merger

__all__ = ["IdentityHandlers"]


class IdentityHandlers:
    """The handlers of identify events, identity messages and the share joins' renames."""

    def __init__(
        self, customers: Customers, merger: Merger, eraser: Eraser, person_eraser: PersonEraser
    ) -> None:
        self.customers = customers
        self.merger = merger
        self.eraser = eraser
        self.person_eraser = person_eraser

    def identify(self, batch: Batch, arrival: Arrival) -> None:
        """An identify event on its customer_id's partition."""
        event: Identify = arrival.value
        partition = arrival.partition
        horizon = self.eraser.horizon(event.customer_id, batch.erasure, partition)
        if horizon is not None and to_us(event.occurred_at) <= horizon:
            # Erased with its customer_id, it takes the erasure to its other id; both
            # remember the link for their later requests.
            self.person_eraser.took(
                batch.identity,
                event.customer_id,
                event.anonymous_id,
                identify_edge(event),
                horizon,
                partition,
            )
            batch.tally.event(arrival.origin, "erased")
            return
        self.merger.identify(batch.identity, States(self.customers, batch), event, partition)
        batch.tally.event(arrival.origin, "processed")

    def message(self, batch: Batch, arrival: Arrival) -> None:
        """A message between the partitions of a person's ids (`Merger.handle`), keyed by the
        id it is for."""
        person = bytes(arrival.record.key).decode("utf-8")
        message = arrival.value
        partition = arrival.partition
        horizon = self.eraser.horizon(person, batch.erasure, partition) if message["kind"] == "pull" else None
        if horizon is not None and message["at"] <= horizon:
            # An identify this id's erasure took: the erasure reaches its other id's
            # person, and this id stays where it is, remembering the link for its later
            # requests.
            edge = message.get("identify") or [message["at"], message["cause"], message["to"], person]
            # The identify event's other id (the puller's person, if it came along a
            # pointer from elsewhere).
            other = {edge[2]: edge[3], edge[3]: edge[2]}.get(person, message["to"])
            self.person_eraser.took(batch.identity, person, other, edge, horizon, partition)
            return
        self.merger.handle(batch.identity, States(self.customers, batch), person, message, partition)

    def renamed(self, batch: Batch, arrival: Arrival) -> None:
        """A share join renamed a merged id: counted towards the person's `merges` message."""
        to = self.merger.answer(batch.identity, arrival.value, arrival.partition)
        if to is not None:  # the person went on: see `Merger.forward_answer`
            self.merger.forward_answer(batch.identity, to, arrival.value)
