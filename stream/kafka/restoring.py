"""A table's changelog records, applied a fetch at a time while it is restored or on standby.

Faust restores a table one record at a time: the consumer hands each changelog record on
as a message of its own (two tasks in its fetch loop), the conductor decodes it into a
queue, and the recovery service takes it out again, a task per record, and counts what is
left over every partition of every table at each record. A worker restored its tables at
about 5,000 records a second (Apache Kafka 4.1.1, 2026-12-06, docs/benchmarks.md): a
takeover of partitions whose changelogs hold a million records waited minutes before
its first event. Applied a fetch at a time, about 80,000 a second.

`ChangelogRestore` keeps Faust's recovery (its offsets, its end, its standbys, its flush
at the end) and changes one thing: the records a fetch brought for a changelog partition
being restored or kept on standby are decoded as Faust decodes them and applied to the
table's store at once, and the recovery's offset of that partition moves to the last of
them. Then the last record alone takes Faust's own path: recovery, seeing its offset
already reached, applies nothing and checks whether it is over, as it would have.
Records of one partition all take this path once one has (those of another partition
touch other keys), so none is applied after a later one of its key.

A changelog written in transactions ends in a commit marker, which no record comes for:
Faust waits for a record at the last offset, and alone would never end such a partition's
recovery (its own exactly_once mode checks the consumer's position instead). `end_past_markers`, called
between fetches, when everything fetched so far is applied, counts a partition whose
consumer position is past its last offset as restored, and ends recovery as Faust does
once none is left.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faust.types import TP

__all__ = ["ChangelogRestore"]


class ChangelogRestore:
    """Applies fetched changelog records of a recovering or standby partition in bulk.

    `to_message` makes Faust's Message of a fetched record (the consumer's `_to_message`);
    `deliver` hands one message to Faust's own path (the consumer's callback)."""

    def __init__(
        self,
        app: Any,
        to_message: Callable[[TP, Any], Any],
        deliver: Callable[[Any], Awaitable[None]],
    ) -> None:
        self._app = app
        self._to_message = to_message
        self._deliver = deliver

    def takes(self, tp: TP) -> bool:
        """Whether `tp` is a changelog partition being restored or kept on standby, of a
        table with no changelog callback of its own (which wants each record)."""
        recovery = self._app.tables.recovery
        if tp not in recovery.active_tps and tp not in recovery.standby_tps:
            return False
        table = recovery.tp_to_table.get(tp)
        return table is not None and not getattr(table, "_on_changelog_event", None)

    async def apply(self, tp: TP, records: Sequence[Any]) -> int | None:
        """Apply `records` (offset order) to `tp`'s table; the offset of the last one
        applied, None if recovery already had them all."""
        recovery = self._app.tables.recovery
        table = recovery.tp_to_table[tp]
        offsets = recovery.active_offsets if tp in recovery.active_tps else recovery.standby_offsets
        seen = offsets.get(tp)
        fresh = [record for record in records if seen is None or record.offset > seen]
        if not fresh:
            return None
        decode = table.changelog_topic.decode
        events = [await decode(self._to_message(tp, record), propagate=True) for record in fresh]
        table.apply_changelog_batch(events)
        last = fresh[-1].offset
        offsets[tp] = last
        # Recovery's own check of whether it is over (and its standbys ready), as after any
        # record it takes: this one it has, so it applies nothing.
        await self._deliver(events[-1].message)
        return int(last)

    def end_past_markers(self, position: Callable[[TP], int | None]) -> None:
        """Count as restored every partition whose `position` is past its last offset: all it
        held before that was fetched, and applied (see the module docstring); end recovery
        if that was all it waited for."""
        recovery = self._app.tables.recovery
        if not recovery.in_recovery:
            return
        moved = False
        for tp, highwater in list(recovery.active_highwaters.items()):
            offset = recovery.active_offsets.get(tp)
            if highwater is None or offset is None or offset >= highwater:
                continue
            at = position(tp)
            if at is not None and at > highwater:
                recovery.active_offsets[tp] = highwater
                moved = True
        if moved and not recovery.need_recovery():
            # What Faust's recovery does after the record that leaves nothing to restore.
            recovery.flush_buffers()
            recovery._set_recovery_ended()  # noqa: SLF001
            recovery.signal_recovery_end.set()
