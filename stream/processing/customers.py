"""The customers table as the handlers use it: each customer decoded once a batch, the most
recent ones kept decoded, and the changed ones stored with what they change in impact."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson

from journey.customer import CustomerState
from journey.impact import Contribution, Packed, add_change, contribution, encode_change
from journey.journal import Layout
from journey.scoring import ppp_update
from journey.stored import Written, load, removed, to_store
from stream.kafka.batching import make_current
from stream.kafka.outbox import Outbox, default_partition, estimate, send_together
from stream.processing.batch import Batch, Config
from stream.processing.erasure.eraser import Eraser
from stream.processing.identity.merging import Merger
from stream.processing.stores import store_get
from stream.serving.leaders import LeaderBoard
from stream.serving.metrics import JourneyMetrics

__all__ = ["Customers", "States"]

# Room kept in a chunk for one impact change record (`encode_change`), added at its end,
# and on every partition for the new entries of one more customer (a customer with more
# keys than this holds can make its chunk two requests).
_CHANGE_ROOM = encode_change(0)
_CHANGES_MARGIN = 32_768


def _size(key: bytes, values: list[bytes]) -> int:
    """What records of `values` under `key` take in a record batch (`estimate`)."""
    return sum(estimate(key, value) for value in values)


class Customers:
    """A worker's customers: the table, its decoded cache, and what this process has
    handled since its last assignment."""

    def __init__(
        self,
        table: Any,
        history: Any,
        config: Config,
        eraser: Eraser,
        merger: Merger,
        metrics: JourneyMetrics,
        *,
        cached: int,
        batch_bytes: int,
    ) -> None:
        self.table = table
        self.config = config
        self.eraser = eraser
        self.merger = merger
        self.metrics = metrics
        # The store itself, as `store` writes it: Table.get's hooks cost 5% of a busy worker.
        self._held = store_get(table)
        self.history = history
        self._segment = store_get(history)
        self._history_changelog = history.changelog_topic.get_topic_name()
        self._windows = (config.rules.csat_window_us, config.rules.cltv_window_us)
        # The top customers by PPP of each partition this worker owns (`stream.serving.leaders`).
        self.leaders = LeaderBoard(table.data, config.partitions)
        # Customers this process has handled since its last assignment (see `Events.score`).
        self._live: set[str] = set()
        # The most recently handled customers, decoded, and their impact contributions: the
        # same as their table entries, which only this process writes until the next
        # assignment (then they are emptied).
        self._decoded: OrderedDict[str, CustomerState] = OrderedDict()
        self._contributions: dict[str, Contribution | None] = {}
        self._decoded_limit = cached
        # What a chunk may put on one partition: a record batch, less its header.
        self._batch_bytes = batch_bytes

    def first_since_takeover(self, customer_id: str) -> bool:
        """Whether this process handles `customer_id` for the first time since it took its
        partition over (and from now on it has): then what a crash may have lost of the
        customer's last output (an update, a tombstone) is sent again."""
        if customer_id in self._live:
            return False
        self._live.add(customer_id)
        return True

    def handled(self, customer_id: str) -> None:
        """`customer_id`'s last output is out again (a tombstone): nothing to re-send."""
        self._live.add(customer_id)

    def reset(self) -> None:
        # After a rebalance, any customer may have been handled elsewhere in between.
        self._live.clear()
        self._decoded.clear()
        self._contributions.clear()
        self.leaders.reset()

    def state(self, batch: Batch, customer_id: str) -> CustomerState:
        """The customer's state in this batch: decoded once, its contribution noted."""
        state = batch.states.get(customer_id)
        if state is not None:
            return state
        state = self._decoded.pop(customer_id, None)
        if state is not None:
            batch.before[customer_id] = self._contributions[customer_id]
        else:
            held: bytes | None = self._held(customer_id)
            if held is None:
                state = CustomerState(customer_id, layout=Layout())
                ids = self.merger.ids_of(batch.identity, customer_id)
                if ids:
                    state.aliases = ids - {customer_id}
            else:
                state = load(held, self._segment, *self._windows)
            batch.before[customer_id] = contribution(state)
        batch.states[customer_id] = state
        batch.layouts[customer_id] = state.layout
        horizon = self.eraser.horizon(customer_id)
        if horizon is not None:
            batch.horizons[customer_id] = horizon
        return state

    def keep_decoded(self, batch: Batch) -> None:
        if not self._decoded_limit:
            return
        decoded = self._decoded
        contributions = self._contributions
        decoded.update(batch.states)  # taken out by `state`, so they go back in as the newest
        contributions.update(batch.before)
        while len(decoded) > self._decoded_limit:
            del contributions[decoded.popitem(last=False)[0]]

    async def store(self, batch: Batch) -> list[Awaitable[Any]]:
        """Write each changed customer's state (table and changelog) together with what its
        change does to the impact entries, and return the deliveries.

        A state and the change of its contribution must leave in one produce request: a
        crash that kept the state but lost the change would lose a contribution for good
        (the events are duplicates from then on), and the other way round would count it
        twice. So they go out in chunks (`send_together`), each chunk's changes summed per
        entry: the hot `all/*` entry gets one change per chunk, not one per event."""
        changelog = self.table.changelog_topic.get_topic_name()
        chunk = batch.out.sibling()
        await chunk.partition_count(changelog)  # metadata known before queuing
        await chunk.partition_count(self._history_changelog)
        await chunk.partition_count(self.config.names.impact_changes)
        update_partitions = await chunk.partition_count(self.config.names.ppp_updates)
        chunks = _Chunks(chunk, self.config.names.impact_changes, self.config.partitions, self._batch_bytes)
        if batch.erasure:
            await self.eraser.add_to(chunk, batch.erasure, batch.current)
        if batch.identity:
            merges = await self.merger.add_to(chunk, batch.identity, batch.current)
            if merges:
                self.metrics.merges.inc(merges)
        current: faust.EventT[Any] | None = None
        for partition, customer_id in _order(batch):
            if current is not batch.current[partition]:
                current = batch.current[partition]
                make_current(current)
            assert current is not None
            await self._store_one(
                batch, chunks, changelog, update_partitions, partition, customer_id, current
            )
        # Updates of customers whose state did not change (re-sent after a takeover: see
        # `Events.score`), in the last chunk, so that they keep their place before the next batch's.
        updates_topic = self.config.names.ppp_updates
        for customer_id, updates in batch.updates.items():
            key = customer_id.encode("utf-8")
            to = default_partition(key, update_partitions)
            if not chunk.room_for(updates_topic, to, _size(key, updates), chunks.limit):
                await chunks.send()
            for update in updates:
                chunk.add(updates_topic, key, update, to)
        batch.updates.clear()
        await chunks.send()
        return chunks.deliveries

    async def _store_one(
        self,
        batch: Batch,
        chunks: _Chunks,
        changelog: str,
        update_partitions: int,
        partition: int,
        customer_id: str,
        current: faust.EventT[Any],
    ) -> None:
        """One changed customer's state, its updates and its impact changes, in the chunk
        (sent first if they would not fit)."""
        chunk, limit = chunks.chunk, chunks.limit
        updates_topic = self.config.names.ppp_updates
        state = batch.states[customer_id]
        prior = batch.layouts.get(customer_id)
        encoded: bytes | None
        if state.holds_anything():
            encoded, written = to_store(state, prior, *self._windows)
        else:
            encoded, written = None, removed(customer_id, prior)
        key = customer_id.encode("utf-8")
        updates = batch.updates.pop(customer_id, ())
        room = chunk.has_room(changelog, partition, key, encoded, limit)
        history = self._history_changelog
        if written:
            room = room and chunk.room_for(history, partition, _written_size(written), limit)
        if updates:
            to = default_partition(key, update_partitions)
            room = room and chunk.room_for(updates_topic, to, _size(key, updates), limit)
        if not room:
            await chunks.send()
            make_current(current)  # others ran meanwhile
        # The history's records, then the head, in the same chunk: one produce request, as
        # a state and its impact change (a head naming a segment that was lost would forget
        # the event_ids in it).
        history_data = self.history.data
        for segment_key, record in written:
            if record is None:
                history_data.pop(segment_key, None)
            else:
                history_data[segment_key] = record
            chunk.add(history, segment_key.encode("utf-8"), record, partition)
        if encoded is None:
            # Nothing left of the customer (an erasure): a tombstone, so that
            # compaction removes the records before it.
            self.table.data.pop(customer_id, None)
            self.leaders.discard(partition, customer_id)
        else:
            self.table.data[customer_id] = encoded
            self.leaders.offer(partition, state)
        chunk.add(changelog, key, encoded, partition)
        for update in updates:  # after the state: see `Pipeline._one_leader`
            chunk.add(updates_topic, key, update, to)
        after = contribution(state)
        for entry in add_change(chunks.changes, batch.before[customer_id], after):
            entry_key = entry.encode("utf-8")
            chunk.reserve(chunks.topic, chunks.partition_for(entry_key), estimate(entry_key, _CHANGE_ROOM))
        batch.before[customer_id] = after
        if chunk.largest() > limit - _CHANGES_MARGIN:
            # Room for the next customer's new entries on any changes partition.
            await chunks.send()
            make_current(current)


def _written_size(written: Written) -> int:
    return sum(estimate(key.encode("utf-8"), record) for key, record in written)


def _order(batch: Batch) -> list[tuple[int, str]]:
    """The batch's changed customers, by partition: those that erasures and merges changed
    first, of every partition, in the request that takes their records (a record without
    its state, after a crash, would make the redelivered message a duplicate and lose the
    state's change)."""
    first = batch.erasure.erased | batch.identity.touched
    return [
        (partition, customer_id)
        for ahead in (True, False)
        for partition, customer_ids in batch.changed.items()
        for customer_id in customer_ids
        if (customer_id in first) == ahead
    ]


@dataclass(slots=True)
class _Chunks:
    """The chunks a batch's states leave in (`Customers.store`): each one produce request,
    with the impact changes of its states summed per entry (`topic`)."""

    chunk: Outbox
    topic: str
    partitions: int
    # What a chunk may put on one partition: a record batch, less its header.
    limit: int
    changes: dict[str, Packed] = field(default_factory=dict)
    deliveries: list[Awaitable[Any]] = field(default_factory=list)

    def partition_for(self, key: bytes) -> int:
        return default_partition(key, self.partitions)

    async def send(self) -> None:
        """The chunk with its changes, in one request; the next chunk starts empty."""
        for entry, change in self.changes.items():
            if change:
                key = entry.encode("utf-8")
                self.chunk.add(self.topic, key, encode_change(change), self.partition_for(key))
        self.deliveries += await send_together(self.chunk)
        self.changes = {}


class States:
    """The batch's states as the merger (`stream.processing.identity.merging.StateHost`)
    and the erasure of persons read and change them."""

    __slots__ = ("batch", "customers")

    def __init__(self, customers: Customers, batch: Batch) -> None:
        self.customers = customers
        self.batch = batch

    def state(self, customer_id: str) -> CustomerState:
        return self.customers.state(self.batch, customer_id)

    def replace(self, state: CustomerState, partition: int) -> None:
        self.state(state.customer_id)  # its contribution before, noted
        self.batch.states[state.customer_id] = state
        self.batch.changed[partition].add(state.customer_id)
        self.batch.identity.touched.add(state.customer_id)

    def publish(self, state: CustomerState) -> None:
        update = ppp_update(state)
        key = state.customer_id.encode("utf-8")
        self.batch.update(
            self.customers.config.names.ppp_updates, state.customer_id, key, orjson.dumps(update)
        )
        self.batch.tally.update_sent(update["csat"], update["ppp"])

    def tombstone(self, customer_id: str) -> None:
        topic = self.customers.config.names.ppp_updates
        # After the updates before it, as an erasure's (`ErasureHandlers.erase`).
        self.batch.updates_apart(topic)
        self.batch.out.add(topic, customer_id.encode("utf-8"), None)
        self.customers.handled(customer_id)

    def settled(self, customer_id: str) -> None:
        """A merge was delivered again: the first time since this process took the person
        over, its current update goes out again, as `Events.score` does for an event. A
        crash can deliver the merged state but lose its update (which leaves after the
        state's acknowledgement once a tombstone is in the batch), and the redelivered
        merge changes nothing: seen as a person's last update older than its state."""
        if self.customers.first_since_takeover(customer_id):
            state = self.state(customer_id)
            if state.version > 0:
                self.publish(state)

    def followed(self, customer_id: str) -> None:
        """A pointer was followed: the first time since this process took the id over, its
        tombstone goes out again, as `Events.score` re-sends a current update. A crash
        can deliver the pointer's record but lose the tombstone, which goes out after it."""
        if self.customers.first_since_takeover(customer_id):
            self.tombstone(customer_id)
