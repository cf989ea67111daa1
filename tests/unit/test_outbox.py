"""What a batch handler's outbox may take before a partition's records overflow one record batch."""

from __future__ import annotations

from typing import Any, cast

from aiokafka.partitioner import DefaultPartitioner

from stream.kafka.outbox import Outbox, default_partition


def _outbox() -> Outbox:
    # `fits`, `add` and `partitions` never reach the producer.
    return Outbox(cast(Any, None), {})


def test_an_empty_outbox_takes_any_record_however_large() -> None:
    assert _outbox().fits([("t", 0, b"k", b"x" * 100_000)], limit=1_000)


def test_records_fit_while_each_partition_stays_within_the_limit() -> None:
    outbox = _outbox()
    outbox.add("t", b"k", b"x" * 400, partition=0)
    # 400 + 1 + 32 already on t/0; another such record would make 866.
    assert outbox.fits([("t", 0, b"k", b"x" * 400)], limit=866)
    assert not outbox.fits([("t", 0, b"k", b"x" * 400)], limit=865)
    # Another partition starts from nothing.
    assert outbox.fits([("t", 1, b"k", b"x" * 800)], limit=865)
    # A join's records are judged together: two on t/1 count twice.
    assert not outbox.fits([("t", 1, b"k", b"x" * 400), ("t", 1, b"k", b"x" * 400)], limit=865)


def test_partitions_are_those_given_with_a_partition() -> None:
    outbox = _outbox()
    outbox.add("changelog", b"a", b"1", partition=2)
    outbox.add("links", b"b", b"2", partition=0)
    outbox.add("updates", b"c", b"3")  # partitioned when sent
    assert outbox.partitions() == {("changelog", 2), ("links", 0)}


def test_default_partition_is_kafkas_default_partitioner() -> None:
    partitioner = DefaultPartitioner()
    for number in range(500):
        key = f"customer-{number}".encode()
        assert default_partition(key, 7) == partitioner(key, list(range(7)), list(range(7)))


def test_largest_is_the_most_counted_against_one_partition() -> None:
    outbox = _outbox()
    assert outbox.largest() == 0
    outbox.add("t", b"k", b"x" * 100, partition=0)  # 133
    outbox.reserve("c", 3, 50)
    outbox.add("t", b"k", b"x" * 10, partition=1)  # 43
    assert outbox.largest() == 133
    outbox.reserve("c", 3, 100)  # 150 on c/3 now
    outbox.add("t", b"k", b"x" * 10, partition=1)  # 86 on t/1
    assert outbox.largest() == 150


def test_room_for_counts_a_size_against_one_partition() -> None:
    outbox = _outbox()
    assert outbox.room_for("t", 0, 10_000, limit=100)  # an empty outbox takes anything
    outbox.add("t", b"k", b"x" * 67, partition=0)  # 100
    assert outbox.room_for("t", 0, 50, limit=150)
    assert not outbox.room_for("t", 0, 51, limit=150)
    assert outbox.room_for("t", 1, 150, limit=150)
