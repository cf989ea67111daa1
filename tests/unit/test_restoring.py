"""Changelog records applied a fetch at a time (`stream.kafka.restoring`), on Faust's own
app, tables and recovery (none started: no broker is asked). That a restored worker holds
its customers is proven end to end by the recovery and fault tests, on both brokers."""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from stream.kafka.restoring import ChangelogRestore
from stream.processing.pipeline import Pipeline


class _Restoring:
    """A table as a worker builds it, its changelog partition 1 in recovery."""

    def __init__(self, *, standby: bool = False) -> None:
        self.app = faust.App(
            "restore-test", broker="kafka://127.0.0.1:9", store="memory://", autodiscover=False
        )
        self.table = Pipeline._table(self.app, "customers", "raw", 2)  # as the worker builds it
        self.recovery = self.app.tables.recovery
        self.tp = TP(self.table.changelog_topic.get_topic_name(), 1)
        if standby:
            self.recovery.add_standby(self.table, self.tp)
        else:
            self.recovery.add_active(self.table, self.tp)
        self.handed_on: list[Any] = []
        # Faust's own record -> message, without building a consumer (and its thread's loop).
        to_message = functools.partial(faust_aiokafka.Consumer._to_message, SimpleNamespace(app=self.app))
        self.restore = ChangelogRestore(self.app, to_message, self._hand_on)

    async def _hand_on(self, message: Any) -> None:
        self.handed_on.append(message)

    def records(self, first: int, *pairs: tuple[str, bytes | None]) -> list[Any]:
        return [
            ConsumerRecord(
                self.tp.topic, 1, offset, 0, 0, key.encode(), value, None, len(key), len(value or b""), []
            )
            for offset, (key, value) in enumerate(pairs, start=first)
        ]

    async def apply(self, records: list[Any]) -> int | None:
        return await self.restore.apply(self.tp, records)

    def held(self) -> dict[str, bytes]:
        return {key: value for key, value in self.table.data.items() if value is not None}


async def test_a_fetch_of_records_is_applied_in_order_and_the_last_one_handed_to_faust() -> None:
    restoring = _Restoring()
    assert restoring.restore.takes(restoring.tp)
    last = await restoring.apply(restoring.records(0, ("a", b"1"), ("b", b"2"), ("a", b"3")))
    assert last == 2
    assert restoring.held() == {"a": b"3", "b": b"2"}
    assert restoring.recovery.active_offsets[restoring.tp] == 2
    # Faust's recovery gets the last record only, already counted: it checks its end.
    assert [message.offset for message in restoring.handed_on] == [2]


async def test_records_recovery_already_has_are_not_applied_again() -> None:
    restoring = _Restoring()
    await restoring.apply(restoring.records(0, ("a", b"1"), ("a", b"2")))
    # Read again from offset 0 (a seek back): only offset 2 is new.
    await restoring.apply(restoring.records(0, ("a", b"stale"), ("a", b"stale"), ("a", b"3")))
    assert restoring.held() == {"a": b"3"}
    assert await restoring.apply(restoring.records(1, ("a", b"stale"), ("a", b"stale"))) is None
    assert restoring.held() == {"a": b"3"}
    assert [message.offset for message in restoring.handed_on] == [1, 2]


async def test_a_tombstone_removes_its_key() -> None:
    restoring = _Restoring()
    await restoring.apply(restoring.records(0, ("a", b"1"), ("b", b"2"), ("a", None)))
    assert restoring.held() == {"b": b"2"}


async def test_a_standby_partition_moves_the_standby_offset() -> None:
    restoring = _Restoring(standby=True)
    assert restoring.restore.takes(restoring.tp)
    await restoring.apply(restoring.records(0, ("a", b"1"), ("a", b"2")))
    assert restoring.held() == {"a": b"2"}
    assert restoring.recovery.standby_offsets[restoring.tp] == 1
    assert restoring.tp not in restoring.recovery.active_offsets


@pytest.mark.parametrize("case", ["not in recovery", "a changelog callback"])
async def test_faust_keeps_what_it_alone_can_do(case: str) -> None:
    restoring = _Restoring()
    tp = restoring.tp
    if case == "not in recovery":
        tp = TP(tp.topic, 0)
    else:

        async def each(event: Any) -> None:
            return None

        restoring.table._on_changelog_event = each  # what `on_changelog_event=` sets
    assert not restoring.restore.takes(tp)


def _in_recovery(restoring: _Restoring, highwater: int, offset: int) -> None:
    """Faust's recovery under way, its highwater the last offset (the end offset less one)."""
    restoring.recovery._set_recovery_started()  # as a rebalance starts it
    restoring.recovery.active_highwaters[restoring.tp] = highwater
    restoring.recovery.active_offsets[restoring.tp] = offset


async def test_a_changelog_ending_in_a_commit_marker_ends_recovery_once_the_consumer_is_past_it() -> None:
    """Records at 0-8, a commit marker at 9 (highwater 9): the consumer's position is 10
    once it has fetched the marker, and no record comes for offset 9."""
    restoring = _Restoring()
    _in_recovery(restoring, highwater=9, offset=-1)
    await restoring.apply(restoring.records(0, *[("a", str(n).encode()) for n in range(9)]))
    assert restoring.recovery.need_recovery()
    restoring.restore.end_past_markers(lambda tp: 10)
    assert restoring.recovery.active_offsets[restoring.tp] == 9
    assert not restoring.recovery.in_recovery
    assert restoring.recovery.signal_recovery_end.is_set()
    assert restoring.held() == {"a": b"8"}


@pytest.mark.parametrize("position", [None, 5, 9])
async def test_recovery_goes_on_while_the_consumer_is_not_past_the_end(position: int | None) -> None:
    restoring = _Restoring()
    _in_recovery(restoring, highwater=9, offset=4)
    restoring.restore.end_past_markers(lambda tp: position)
    assert restoring.recovery.active_offsets[restoring.tp] == 4
    assert restoring.recovery.in_recovery
    assert not restoring.recovery.signal_recovery_end.is_set()


async def test_recovery_ends_only_when_no_partition_waits() -> None:
    restoring = _Restoring()
    _in_recovery(restoring, highwater=9, offset=8)
    other = TP(restoring.tp.topic, 0)
    restoring.recovery.add_active(restoring.table, other)
    restoring.recovery.active_highwaters[other] = 5
    restoring.recovery.active_offsets[other] = 2
    restoring.restore.end_past_markers(lambda tp: 10 if tp == restoring.tp else 3)
    assert restoring.recovery.active_offsets[restoring.tp] == 9
    assert restoring.recovery.active_offsets[other] == 2
    assert restoring.recovery.in_recovery
