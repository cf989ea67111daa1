"""A touchpoint, purchase, survey or share on its way into a person's state: the id's own
erasure, a person it left or moved from, then scoring (`journey.scoring.apply_event`)."""

from __future__ import annotations

import orjson

from journey.customer import to_us
from journey.referrals import sighting_for
from journey.scoring import apply_event, ppp_update
from schemas.events import Event
from stream.kafka.topics import ORIGIN_HEADER
from stream.processing.batch import Arrival, Batch, Config
from stream.processing.customers import Customers, States
from stream.processing.erasure.eraser import Eraser
from stream.processing.identity.merging import Merger

__all__ = ["Events"]


class Events:
    """The handler of scored events, their own or forwarded to the person of their id."""

    def __init__(self, config: Config, customers: Customers, merger: Merger, eraser: Eraser) -> None:
        self.config = config
        self.customers = customers
        self.merger = merger
        self.eraser = eraser
        # TopicNames builds a name at each access: once here, not per event.
        self._rekeyed, self._updates = config.names.rekeyed, config.names.ppp_updates

    def handle(self, batch: Batch, arrival: Arrival) -> None:
        """An event on its customer's partition, or forwarded (on the re-keying topic, keyed
        by the id of the person it is for)."""
        event: Event = arrival.value
        record, origin, partition = arrival.record, arrival.origin, arrival.partition
        person = bytes(record.key).decode("utf-8") if arrival.rekeyed and record.key else event.customer_id
        to = self.merger.pointer(batch.identity, person, partition)
        horizon = (
            self.eraser.horizon(person, batch.erasure, partition)
            if to is not None and person == event.customer_id
            else None
        )
        if horizon is not None and to_us(event.occurred_at) <= horizon:
            batch.tally.event(origin, "erased")  # the id's own erasure
            return
        if to is None and person != event.customer_id and self._left(batch, person, event):
            # Forwarded to a person its id has left (the person's erasure gave each id its
            # own events back): back to its own id.
            batch.out.add(
                self._rekeyed,
                event.customer_id.encode("utf-8"),
                record.value,
                headers=[(ORIGIN_HEADER, origin.encode())],
            )
            return
        if to is not None:
            # The id stopped being canonical: its person is elsewhere now.
            States(self.customers, batch).followed(person)
            batch.out.add(
                self._rekeyed, to.encode("utf-8"), record.value, headers=[(ORIGIN_HEADER, origin.encode())]
            )
            return
        self.score(batch, event, origin, person, partition)

    def _left(self, batch: Batch, person: str, event: Event) -> bool:
        """Whether an event forwarded to `person` is of an id no longer among its ids."""
        ids = self.merger.ids_of(batch.identity, person)
        return ids is None or event.customer_id not in ids

    def score(self, batch: Batch, event: Event, origin: str, customer_id: str, partition: int) -> None:
        """Fold an event into the state of its person, `customer_id` (its own id, or the
        canonical id it was forwarded to)."""
        tally = batch.tally
        tally.lags[origin].append(max(0.0, (batch.received - event.occurred_at).total_seconds()))
        key = customer_id.encode("utf-8")
        state = self.customers.state(batch, customer_id)
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
        if self.customers.first_since_takeover(customer_id) and update is None:
            # The state may come from a changelog record whose update a crash lost (queued
            # together, only one delivered). Send the current update again, same version,
            # so that the latest version is always out; a consumer that has it drops it.
            update = ppp_update(state)
        if update is not None:
            batch.update(self._updates, customer_id, key, orjson.dumps(update))
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
