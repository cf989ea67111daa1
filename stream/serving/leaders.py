"""Platinum customers across all partitions: each owner publishes its partitions' top
customers by PPP to `<app>-leaders`, and every worker reads them all.

The top of every partition is derived data: rebuilt from the customers table after a
takeover and published again, so it needs no changelog and no exactly-once send. It is
published at most once a second per partition (`PUBLISH_INTERVAL`), however busy the
partition: a top customer's every event changes its state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from journey.customer import CustomerState
from journey.leaders import LEADERS, Leaders, ranked
from journey.recovery import at_risk
from journey.stored import decode_head
from stream.kafka.batching import JourneyApp
from stream.kafka.outbox import default_partition
from stream.serving.followed import FollowedTopic

__all__ = ["PUBLISH_INTERVAL", "LeaderBoard", "LeadersView", "register_leaders_timer"]

PUBLISH_INTERVAL = 1.0
# Customers decoded between two yields to the event loop while rebuilding.
_REBUILD_SLICE = 2_000
_murmur_partition: Callable[[bytes, int], int] = default_partition.__wrapped__  # uncached: one pass


class LeaderBoard:
    """The candidates of each partition this worker owns, and what to publish."""

    def __init__(self, store: dict[str, bytes], partitions: int) -> None:
        self.store = store  # the customers table's data: customer_id -> encoded state
        self.partitions = partitions
        self.leaders: dict[int, Leaders] = {}
        # The partitions this worker owns; None after an assignment, until recovery is over.
        self.owned: frozenset[int] | None = None
        self.dirty: set[int] = set()
        # Customers offered while a rebuild reads the store: offered again when it ends.
        self._touched: set[str] | None = None

    def offer(self, partition: int, state: CustomerState) -> None:
        """A customer's state as just stored (called for every change)."""
        if self._touched is not None:
            self._touched.add(state.customer_id)
        leaders = self.leaders.get(partition)
        if leaders is None or state.version == 0:
            return
        risky = leaders.note_risk(state.customer_id, at_risk(state))
        if leaders.offer(state.customer_id, state.ppp, state.view) or risky:
            self.dirty.add(partition)

    def discard(self, partition: int, customer_id: str) -> None:
        """A customer erased: no longer a candidate (the floor still bounds everyone else)."""
        leaders = self.leaders.get(partition)
        if leaders is None:
            return
        risky = leaders.note_risk(customer_id, False)
        if leaders.members.pop(customer_id, None) is not None or risky:
            self.dirty.add(partition)

    def reset(self) -> None:
        """A new assignment: any customer may have changed elsewhere in between."""
        self.owned = None
        self.leaders = {}
        self.dirty.clear()

    def assign(self, owned: frozenset[int]) -> None:
        """The partitions owned once recovery is over: their tops are rebuilt from the table."""
        self.owned = owned

    def stale(self) -> set[int]:
        """Owned partitions without candidates, or whose top may miss someone."""
        return {p for p in self.owned or () if p not in self.leaders or self.leaders[p].needs_rebuild()}

    async def rebuild(self, partitions: set[int]) -> None:
        """Candidates of `partitions` from every held customer, yielding now and then."""
        fresh = {partition: Leaders() for partition in partitions}
        self._touched = set()
        try:
            for start, customer_id in enumerate(list(self.store)):
                if start % _REBUILD_SLICE == _REBUILD_SLICE - 1:
                    await asyncio.sleep(0)
                self._offer_held(fresh, customer_id)
            # Changed while the store was read: offered again, as they are now.
            for customer_id in self._touched:
                self._offer_held(fresh, customer_id)
        finally:
            self._touched = None
        for partition in partitions & (self.owned or frozenset()):  # a rebalance may have come
            self.leaders[partition] = fresh[partition]
            self.dirty.add(partition)

    def _offer_held(self, fresh: dict[int, Leaders], customer_id: str) -> None:
        raw = self.store.get(customer_id)
        if raw is None:
            return
        leaders = fresh.get(_murmur_partition(customer_id.encode("utf-8"), self.partitions))
        if leaders is None:
            return
        state = decode_head(raw)
        if state.version > 0:  # a state of version 0 only holds a referral link so far
            leaders.note_risk(customer_id, at_risk(state))
            leaders.offer(customer_id, state.ppp, state.view)

    def take_dirty(self) -> dict[int, bytes]:
        """What to publish: each changed partition's top (a list of states) and its count of
        customers at risk, as a JSON object."""
        out = {
            partition: orjson.dumps(
                {"top": self.leaders[partition].top(LEADERS), "at_risk": len(self.leaders[partition].at_risk)}
            )
            for partition in self.dirty
            if partition in self.leaders
        }
        self.dirty.clear()
        return out


def register_leaders_timer(app: JourneyApp, board: LeaderBoard, inputs: set[str], topic: str) -> None:
    """Publish each owned partition's top when it changed, at most once a `PUBLISH_INTERVAL`.

    A rebuild reads every held customer (about 10 µs each): one that must come again soon
    (candidates falling below the floor) waits twenty times as long as the last one took,
    so that rebuilding never takes more than a twentieth of the worker."""
    next_rebuild = 0.0

    @app.timer(PUBLISH_INTERVAL)
    async def publish_leaders() -> None:
        nonlocal next_rebuild
        if app.rebalancing or app.consumer is None:
            return
        if board.owned is None:
            board.assign(frozenset(tp.partition for tp in app.consumer.assignment() if tp.topic in inputs))
            next_rebuild = 0.0
        stale = board.stale()
        now = time.monotonic()
        if stale and now >= next_rebuild:
            await board.rebuild(stale)
            next_rebuild = time.monotonic() + 20 * (time.monotonic() - now)
        for partition, value in board.take_dirty().items():
            key = str(partition).encode("ascii")
            if app.transactions is None:
                await app.producer.send_and_wait(topic, key, value, None, None, None)
                continue
            async with app.transactions.sending():  # shows at the next commit
                await app.producer.send(topic, key, value, None, None, None)


class LeadersView(FollowedTopic):
    """Every partition's published top, as `<app>-leaders` has it, in every worker."""

    missing = "no platinum customers to show"

    def __init__(self) -> None:
        super().__init__()
        # partition number -> its top (customer states) and its count at risk, parsed once
        # when it arrives rather than at every read
        self.published: dict[str, tuple[list[dict[str, Any]], int]] = {}

    def _keep(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.published.pop(key, None)
            return
        published = orjson.loads(value)
        # A JSON object; a list (a top alone) from releases before the second moment.
        if isinstance(published, dict):
            self.published[key] = (published["top"], published["at_risk"])
        else:
            self.published[key] = (published, 0)

    def _forget(self) -> None:
        self.published.clear()

    def top(self, count: int) -> list[dict[str, Any]]:
        """The top `count` customers by PPP across every partition."""
        views: list[dict[str, Any]] = []
        for top, _ in self.published.values():
            views += top
        return ranked(views, count)

    def at_risk(self) -> int:
        """Customers at risk (`journey.recovery.at_risk`) across every partition."""
        return sum(risky for _, risky in self.published.values())
