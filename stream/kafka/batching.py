"""Faust's consumer, handing each fetched batch of the input topics to one handler at once.

Faust delivers every message on its own: a Message and an Event object, two tasks per
message in the fetch loop (`wait_first`), a queue hop into the agent's stream and a
per-message ack. BROKER-NOTES measured a bare Faust passthrough at 6,600 messages/s on a
machine where aiokafka alone moves 100,000+; a journey worker spent most of its time there.

`BatchingConsumer` keeps everything else of Faust (group membership, partition assignment,
table recovery and standbys, changelogs, offset commits, flow control on rebalance) and
changes one thing: records of topics named in `JourneyApp.batch_handlers` go, everything
one fetch brought for them (all partitions) at once, to the handler; their offsets are
acked together when the completion the handler returns is done. Records of every other
topic (changelogs in recovery, any agent's topics) take Faust's own path unchanged.

A batch runs to its end even when a rebalance stops the fetcher (it is shielded), and
`wait_empty`, which Faust awaits before giving partitions up and before shutting down,
waits for it and for its completion: a table write and its changelog record are never
separated by a cancel. While one batch's sends wait for the broker the next is handled.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, cast

import faust
from aiokafka.structs import TopicPartition
from faust.streams import _current_event
from faust.transport import drivers
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from mode import ServiceT
from mode.utils.futures import notify

from stream.kafka.outbox import default_partition
from stream.kafka.restoring import ChangelogRestore
from stream.kafka.transactions import TRANSACTION_TIMEOUT_MS, Transactions

__all__ = [
    "BatchHandler",
    "BatchingConsumer",
    "IdempotentCapableProducer",
    "JourneyApp",
    "current_record",
    "make_current",
]

# Takes what one fetch brought, per partition, in offset order (aiokafka ConsumerRecords),
# and returns once the next batch may be handled, with what is still to finish (sends
# waiting for the broker): the batch's offsets are acked when that is done. Completions
# must finish in the order their batches came, which the handler guarantees.
BatchHandler = Callable[[Mapping[TP, Sequence[Any]]], Awaitable[Awaitable[None]]]


def current_record(app: faust.App, tp: TP, record: Any) -> faust.EventT[Any]:
    """Make `record` Faust's current event, as an agent's stream does for each message.

    Faust's stores find a key's partition through the current event (RocksDB keeps a
    database per partition, and looks a key up in the current event's). The caller keeps
    the returned event alive for as long as it should stay current (Faust holds it weakly).
    """
    message = cast(Any, app.consumer)._to_message(tp, record)  # noqa: SLF001
    event: faust.EventT[Any] = faust.Event(app, record.key, record.value, record.headers, message)
    make_current(event)
    return event


def make_current(event: faust.EventT[Any]) -> None:
    """Make an event from `current_record` current again."""
    _current_event.set(weakref.ref(event))


class BatchingConsumer(faust_aiokafka.Consumer):
    """See the module docstring."""

    # The handler of the batch being handled, and the completion of the last one handed
    # over (completions finish in order: see `BatchHandler`).
    _in_flight: asyncio.Future[None] | None = None
    _completing: asyncio.Future[None] | None = None
    # The completions not done yet, of every handler (see `_commit_tps`).
    _completions: set[asyncio.Future[None]] | None = None
    # Seeks to the committed offsets begun and ended (see `perform_seek`).
    _seeks_begun = 0
    _seeks_ended = 0
    _no_seek_event: asyncio.Event | None = None
    _restore_changelogs: ChangelogRestore | None = None
    # Changelog partitions some of whose fetched records were dropped unapplied (fetched
    # while the flow stopped, or while paused): their position says nothing of what their
    # table has until a seek reads them again (see `_position_applied`).
    _unapplied: set[TP] | None = None

    def _batch_handlers(self) -> dict[str, BatchHandler]:
        return cast(JourneyApp, self.app).batch_handlers

    async def perform_seek(self) -> None:
        """Faust's seek of every partition back to its committed offset, on record.

        After a rebalance Faust resumes the stream partitions and only then seeks them to
        their committed offsets: records fetched meanwhile may come from positions the seek
        replaces. Delivered to an agent while the seek ran, some were lost for good (the
        takeover test: offsets 50-52 delivered during the seek, never processed, then
        skipped as already read after later ones of the same fetch). The drain loop drops
        the stream records of any fetch a seek overlapped and reads those partitions again
        from where the seek put them (`_fetch_again`): a few records twice at worst, which
        the tables' dedupe absorbs.
        """
        self._seeks_begun += 1
        self._no_seek().clear()
        try:
            await super().perform_seek()
        finally:
            self._seeks_ended += 1
            if self._seeks_ended == self._seeks_begun:
                self._no_seek().set()

    def _no_seek(self) -> asyncio.Event:
        # Made on first use: the consumer is built before the loop it waits on may run.
        if self._no_seek_event is None:
            self._no_seek_event = asyncio.Event()
            self._no_seek_event.set()
        return self._no_seek_event

    def _resynced_since(self, seeks: int) -> bool:
        """Whether a seek began after `seeks` (the count of begun seeks at fetch time)."""
        return self._seeks_begun != seeks

    async def _fetch_again(self, tps: set[TP]) -> None:
        """Read `tps` again from where the last seek put them (or from the last record
        read, which the tables' dedupe takes again harmlessly), once any seek has ended."""
        await self._no_seek().wait()
        self.log.info("Reading %d partitions again from where a seek put them", len(tps))
        assigned = self.assignment()
        for tp in tps & assigned:
            offset = self._read_offset.get(tp)
            if offset is None:
                # Nothing committed: from the start, as the reset policy (earliest) reads,
                # but to that offset: a seek to the beginning leaves the position unset
                # until the next fetch, and Faust's livelock check asserts on it (it crashed
                # a restarted worker whose new internal topics had nothing committed yet).
                earliest = await self.earliest_offsets(tp)
                await self._seek(tp, earliest[tp])
            else:
                await self._seek(tp, offset)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        # Longer than a screen (75 lines) on purpose: it follows Faust's own `_drain_messages`
        # step by step (faust-streaming 0.15.3, pinned), so that the two read side by side.
        handlers = self._batch_handlers()
        if not handlers:
            await super()._drain_messages(fetcher)
            return
        monitor = self.app.monitor
        try:
            while not (self.should_stop or fetcher.should_stop):
                self.diag.set_flag(CONSUMER_FETCHING)
                # A seek still running counts as begun after the fetch.
                seeks = self._seeks_ended
                records, active = await self._wait_next_records(timeout=1.0)
                await self.sleep(0)
                if not records or self.should_stop:
                    self._restoring().end_past_markers(self._position_applied)
                    continue
                generation = self.app.consumer_generation_id
                acks_enabled = self.app.topics.acks_enabled_for
                # One call per handler for everything this fetch brought it, so that the
                # handler waits for the broker once per fetch, not once per partition.
                batches: dict[BatchHandler, dict[TP, tuple[int, list[Any]]]] = {}
                again: set[TP] = set()
                for tp, batch in records.items():
                    handler = handlers.get(tp.topic)
                    if not self._flowing(generation) or (
                        active is not None and tp not in active and tp not in self._buffered_partitions
                    ):
                        # Fetched but not to be handled now: the position has moved past
                        # them. Faust drops these and counts on the seek to the committed
                        # offset after a rebalance, which does not move a partition that
                        # has nothing committed yet (aiokafka's `seek_to_committed`): a
                        # takeover of a killed worker's partitions lost every event of them
                        # (recovery paused the partitions while their first fetch ran). So
                        # they are read again (changelogs: Faust's recovery seeks those).
                        if handler is not None:
                            again.add(tp)
                        else:
                            self._unapplied_changelogs().add(tp)
                        continue
                    if acks_enabled(tp.topic) and self._resynced_since(seeks):
                        again.add(tp)  # changelogs are not seeked back: theirs are kept
                        continue
                    monitor.track_tp_end_offset(tp, self.highwater(tp))
                    read = self._read_offset[tp]
                    if handler is None:
                        if self._restoring().takes(tp):
                            await self._restore(tp, [r for r in batch if read is None or r.offset >= read])
                        elif not await self._deliver_each(tp, batch, generation, seeks):
                            again.add(tp)
                        continue
                    # Faust's read offset is the next to read after a seek, the last read otherwise.
                    fresh = [r for r in batch if read is None or r.offset >= read]
                    if fresh:
                        batches.setdefault(handler, {})[tp] = (self._first_unread(tp, read, fresh), fresh)
                for handler, by_tp in batches.items():
                    if not self._flowing(generation) or self._resynced_since(seeks):
                        again.update(by_tp)  # as above
                        continue
                    await self._maybe_commit_every()
                    now = time.monotonic()
                    for tp in by_tp:
                        monitor.stream_inbound_time[tp] = now
                    await self._run_batch(handler, by_tp)
                    for tp, (_, fresh) in by_tp.items():
                        self._read_offset[tp] = fresh[-1].offset
                if again:
                    await self._fetch_again(again)
                # Everything fetched is applied: a position past a changelog's end is markers.
                self._restoring().end_past_markers(self._position_applied)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _restoring(self) -> ChangelogRestore:
        # Made on first use: the app's tables exist once the consumer runs.
        if self._restore_changelogs is None:
            self._restore_changelogs = ChangelogRestore(self.app, self._to_message, self._deliver_one)
        return self._restore_changelogs

    async def _deliver_one(self, message: Any) -> None:
        # As `_deliver_each` hands a message on: not waiting through a rebalance's pause.
        await self.wait_first(self.callback(message), self.suspend_flow.wait())

    async def _restore(self, tp: TP, records: list[Any]) -> None:
        """A changelog partition's records, applied to its table at once (`stream.kafka.restoring`)."""
        if records:
            await self._restoring().apply(tp, records)
            self._read_offset[tp] = records[-1].offset

    def _unapplied_changelogs(self) -> set[TP]:
        if self._unapplied is None:
            self._unapplied = set()
        return self._unapplied

    def _position_applied(self, tp: TP) -> int | None:
        """The position in a changelog partition, if every record before it was applied."""
        return None if tp in self._unapplied_changelogs() else self._position_now(tp)

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        # How recovery moves changelog partitions: their records are read again from there.
        await super().seek_wait(partitions)
        self._unapplied_changelogs().difference_update(partitions)

    async def _seek(self, partition: TP, offset: int) -> None:
        await super()._seek(partition, offset)
        self._unapplied_changelogs().discard(partition)

    def _flowing(self, generation: int) -> bool:
        return self.flow_active and self.app.consumer_generation_id == generation

    async def _deliver_each(self, tp: TP, records: Sequence[Any], generation: int, seeks: int) -> bool:
        """Faust's own path, one message at a time, as its `_drain_messages` does it, but
        stopping where a seek began: False then (see `perform_seek`)."""
        acks_enabled = self.app.topics.acks_enabled_for(tp.topic)
        for record in records:
            if acks_enabled and self._resynced_since(seeks):
                return False
            if not self._flowing(generation):
                return True
            offset = record.offset
            read = self._read_offset[tp]
            if read is not None and offset < read:
                continue
            if read and offset - read > 1 and acks_enabled:
                await self._add_gap(tp, read + 1, offset)
            await self._maybe_commit_every()
            await self.wait_first(self.callback(self._to_message(tp, record)), self.suspend_flow.wait())
            if acks_enabled and self._resynced_since(seeks):
                return False
            self._read_offset[tp] = offset
        return True

    async def _maybe_commit_every(self) -> None:
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()

    def _first_unread(self, tp: TP, read: int | None, records: Sequence[Any]) -> int:
        """Where this batch's acks start: offsets no record will ever come for (control
        records of transactions, compacted-away records) are acked with the batch, or the
        commit would stop at the first of them."""
        if read is not None:
            # Acking `read` again is harmless: an offset already acked or committed is skipped.
            return read
        committed = self._committed_offset[tp]
        first = int(records[0].offset)
        return committed if committed is not None and committed <= first else first

    async def _run_batch(self, handler: BatchHandler, by_tp: dict[TP, tuple[int, list[Any]]]) -> None:
        completing = self._completing
        if completing is not None and completing.done() and completing.exception() is not None:
            raise cast(BaseException, completing.exception())
        acks = [(tp, range(start, records[-1].offset + 1)) for tp, (start, records) in by_tp.items()]

        async def complete(done: Awaitable[None]) -> None:
            await done
            for tp, offsets in acks:
                self._ack_offsets(tp, offsets)

        async def run() -> None:
            done = await handler({tp: records for tp, (_, records) in by_tp.items()})
            self._completing = asyncio.ensure_future(complete(done))
            # Every handler's, not only the last: a commit in transactions waits for all.
            if self._completions is None:
                self._completions = set()
            self._completions.add(self._completing)
            self._completing.add_done_callback(self._completions.discard)

        async def run_in_transaction(transactions: Transactions) -> None:
            # No commit while a batch is handed out; its completion may go on after.
            async with transactions.sending():
                await run()

        transactions = cast(JourneyApp, self.app).transactions
        self._in_flight = asyncio.ensure_future(
            run() if transactions is None else run_in_transaction(transactions)
        )
        await asyncio.shield(self._in_flight)

    def _ack_offsets(self, tp: TP, offsets: range) -> None:
        """What `Consumer.ack` does per message, for a whole batch."""
        with ack_lock:
            committed = self._committed_offset[tp]
            acked_index = self._acked_index[tp]
            new = [o for o in offsets if (committed is None or o >= committed) and o not in acked_index]
            acked_index.update(new)
            self._acked[tp].extend(new)
            self._n_acked += len(new)
        notify(self._waiting_for_ack)

    async def _commit_tps(self, tps: Iterable[TP], start_new_transaction: bool) -> bool:
        """Faust's commit, or in transactions (`stream.kafka.transactions`): once no batch is being
        handed out and the last one's sends are done, the offsets every handled batch reached
        commit with everything sent since the last commit, in one transaction (also with
        no new offset: a re-sent update of a redelivered event is in it, and at a rebalance
        or shutdown nothing may stay open)."""
        transactions = cast(JourneyApp, self.app).transactions
        if transactions is None:
            return await super()._commit_tps(tps, start_new_transaction)
        async with transactions.lock:
            # Every batch's sends done (a handler's completion may send its table records
            # after its links are acknowledged): its offsets then commit with all of them.
            pending = [*(self._completions or ()), *([self._completing] if self._completing else [])]
            if pending:
                await asyncio.wait(pending)
            for completing in pending:
                if completing.exception() is not None:
                    # Sends of the open transaction failed: it cannot commit, and the tables
                    # already hold what it would have: the worker stops, and starts again
                    # from the committed offsets and changelogs.
                    raise cast(BaseException, completing.exception())
            assignment = self.assignment()
            # Recomputed: batches acked while waiting are in this transaction too.
            committable = {
                tp: offset
                for tp, offset in self._filter_committable_offsets(list(self._acked)).items()
                if tp in assignment
            }
            await transactions.commit(
                {TopicPartition(tp.topic, tp.partition): offset for tp, offset in committable.items()}
            )
        if committable:
            self.app.tables.on_commit(committable)
            self._committed_offset.update(committable)
            self.app.monitor.on_tp_commit(committable)
        return bool(committable)

    def caught_up_position(self, tp: TP) -> int | None:
        """The consumer's position in `tp` when everything read there is committed, else None.

        Past the last record read the position has only skipped transaction markers (topics
        journey writes in transactions), which no record will ever come for: committed at
        the last record, such a partition would show a lag of one per marker for good. For
        the lag gauge only (`stream.serving.lag`): the commit stays at the last record, as a record
        fetched meanwhile and not handled yet moves the position too."""
        read = self._read_offset.get(tp)
        if read is None or self._committed_offset.get(tp) != read + 1:
            return None
        return self._position_now(tp)

    def _position_now(self, tp: TP) -> int | None:
        """The consumer's position in `tp`: past every record fetched so far."""
        # aiokafka's positions (in Faust's consumer thread): no public view of them.
        subscription = self._thread._ensure_consumer()._subscription.subscription  # noqa: SLF001
        state = None if subscription is None else subscription.assignment.state_value(tp)
        return state.position if state is not None and state.has_valid_position else None

    async def wait_empty(self) -> None:
        # A batch's outcome is its own business (a failed one is raised by the next
        # `_run_batch`); here it only has to be over, sent and acked, or failed.
        for attribute in ("_in_flight", "_completing"):
            task = getattr(self, attribute)
            if task is not None and not task.done():
                await asyncio.wait([task])
        await super().wait_empty()


class IdempotentCapableProducer(faust_aiokafka.Producer):
    """Faust's producer, idempotent (with acks=all, as Kafka requires) when the app says so
    (`stream.kafka.idempotence`)."""

    def _settings_extra(self) -> Mapping[str, Any]:
        extra = dict(super()._settings_extra())
        if getattr(self.app, "idempotent_producer", False):
            extra.update(acks="all", enable_idempotence=True)
        if getattr(self.app, "transactional_id", None) is not None:
            extra.update(transaction_timeout_ms=TRANSACTION_TIMEOUT_MS)
        return extra

    def _new_producer(self, transactional_id: str | None = None) -> Any:
        # Faust passes transactional_id on its own (None outside its exactly_once mode).
        return super()._new_producer(transactional_id or getattr(self.app, "transactional_id", None))

    def key_partition(self, topic: str, key: bytes) -> TP:
        """The partition of `key` in `topic`, as Faust's router asks it to find a table key's
        owner. aiokafka answers from the producer's metadata, which lacked a topic the
        producer had not written to yet (a lookup answered 500 on Kafka): then murmur2 over
        the topics' partition count, which is what the producer would pick."""
        metadata = self._ensure_producer()._metadata  # noqa: SLF001  # aiokafka's, as Faust reads it
        if metadata.partitions_for_topic(topic) is None:
            return TP(topic, default_partition(key, int(self.app.conf.topic_partitions)))
        return super().key_partition(topic, key)


class _Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[Any]] = BatchingConsumer
    Producer: ClassVar[type[Any]] = IdempotentCapableProducer


class JourneyApp(faust.App):
    """A Faust app whose consumer hands batches of `batch_handlers`' topics to them."""

    def __init__(
        self,
        *args: Any,
        idempotent_producer: bool = False,
        transactional_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.batch_handlers: dict[str, BatchHandler] = {}
        self.idempotent_producer = idempotent_producer
        self.transactional_id = transactional_id
        super().__init__(*args, **kwargs)
        # Exactly-once (`stream.kafka.transactions`): the open transaction of the app's producer.
        self.transactions: Transactions | None = None
        if transactional_id is not None:
            self.transactions = Transactions(
                lambda: cast(Any, self.producer)._ensure_producer(),  # noqa: SLF001  # as Faust reaches it
                self.conf.id,
            )

    def _new_transport(self) -> Any:
        scheme = str(self.conf.broker_consumer[0].scheme)
        if drivers.by_name(scheme) is not faust_aiokafka.Transport:
            return super()._new_transport()
        return _Transport(self.conf.broker_consumer, self)
