"""One input batch in the making, and one record of it as the dispatcher hands it on."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import faust

from journey.customer import CustomerState
from journey.impact import Contribution
from journey.journal import Layout
from journey.scoring import ScoringRules
from stream.kafka.outbox import Outbox
from stream.kafka.topics import TopicNames
from stream.processing.erasure.eraser import ErasureWork
from stream.processing.identity.merging import IdentityWork
from stream.serving.metrics import BatchTally

__all__ = ["Arrival", "Batch", "Config"]


@dataclass(frozen=True, slots=True)
class Config:
    """What every handler reads of the worker's settings."""

    rules: ScoringRules
    names: TopicNames
    partitions: int
    max_event_bytes: int


@dataclass(slots=True)
class Arrival:
    """One input record, decoded once by the dispatcher (`Pipeline._arrival`): `kind` names
    its handler, `value` is what the handler takes (a parsed event or request, or a
    message's JSON), `origin` the input topic it came on (its origin header on the
    re-keying topic)."""

    kind: str
    record: Any
    origin: str
    partition: int
    rekeyed: bool
    value: Any


@dataclass(slots=True)
class Batch:
    """One input batch in the making: customers decoded, what changed, what to send."""

    received: datetime
    out: Outbox
    states: dict[str, CustomerState] = field(default_factory=dict)
    # Each customer's impact contribution as stored before this batch.
    before: dict[str, Contribution | None] = field(default_factory=dict)
    # Each customer's layout as stored before this batch (`journey.stored.to_store`).
    layouts: dict[str, Layout | None] = field(default_factory=dict)
    # Customers whose state changed, by their partition (which is their changelog's).
    changed: defaultdict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    # Faust's current event for each partition of the batch (see `current_record`).
    current: dict[int, faust.EventT[Any]] = field(default_factory=dict)
    tally: BatchTally = field(default_factory=BatchTally)
    # Erasure horizons of the batch's customers that have one (see `Customers.state`).
    horizons: dict[str, int] = field(default_factory=dict)
    # Sightings for the share joins: (customer_id, at_us, share key, message), sent once
    # the batch is over, without those an erasure later in the batch removed.
    sightings: list[tuple[str, int, bytes, bytes]] = field(default_factory=list)
    # What erasures changed, to leave with the customers' states in one request (see
    # `Customers.store`).
    erasure: ErasureWork = field(default_factory=ErasureWork)
    # What identify events and identity messages changed (`stream.processing.identity`), likewise.
    identity: IdentityWork = field(default_factory=IdentityWork)
    # Whether the batch's updates leave with their customers' states (`Pipeline._one_leader`):
    # then they wait here, per customer in version order, instead of in `out`.
    joint: bool = False
    updates: dict[str, list[bytes]] = field(default_factory=dict)

    def update(self, topic: str, customer_id: str, key: bytes, value: bytes) -> None:
        if self.joint:
            self.updates.setdefault(customer_id, []).append(value)
        else:
            self.out.add(topic, key, value)

    def updates_apart(self, topic: str) -> None:
        """From here on the updates go in `out`, after those held so far (in their order)."""
        for customer_id, values in self.updates.items():
            key = customer_id.encode("utf-8")
            for value in values:
                self.out.add(topic, key, value)
        self.updates.clear()
        self.joint = False
