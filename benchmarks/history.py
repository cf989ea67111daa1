"""The history stage of `make bench`: what one more event costs a worker for customers with
10, 100 and 1,000 prior events (issue #33: cost must not grow with loyalty).

For each history length, a deployment of its own: `CUSTOMERS` (200) customers whose prior events
(touchpoints with sentiment, purchases and surveys, one every 17 hours: the longer
histories span two years, so their CSAT and 365-day windows are full) are streamed through
one worker first; then `ROUNDS` rounds of one new event per customer, each round waited for
before the next, so that a customer is in one batch per round. Measured over the rounds
only: the worker's CPU per event (less what it spends idle), events/s, and the bytes the worker wrote per event to the
customers changelog and to every topic but the inputs (keys and values, as read back).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from stream.kafka.admin import create_topics
from stream.kafka.topics import TopicNames

__all__ = ["HistoryCost", "history_stage"]

CUSTOMERS = 200
ROUNDS = 20
IDLE_SECONDS = 3.0
_STEP = timedelta(hours=17)
_START = datetime(2025, 1, 1, tzinfo=UTC)


class HistoryCost:
    """What one more event cost, for customers of `prior` prior events."""

    def __init__(
        self, prior: int, events: int, seconds: float, cpu: float, changelog: int, written: int
    ) -> None:
        self.prior = prior
        self.events = events
        self.rate = events / seconds
        self.cpu_us = cpu / events * 1e6
        self.changelog_bytes = changelog / events
        self.written_bytes = written / events

    def line(self) -> str:
        return (
            f"  {self.prior:>5} prior events: {self.rate:,.0f} events/s, worker CPU {self.cpu_us:.1f} us/event, "
            f"customers changelog {self.changelog_bytes:,.0f} B/event, all outputs {self.written_bytes:,.0f} B/event"
        )


def _event(customer: str, index: int) -> dict[str, Any]:
    """The `index`th event of a customer: a touchpoint with sentiment, a purchase or a survey."""
    at = (_START + _STEP * index).isoformat().replace("+00:00", "Z")
    base = {"event_id": f"{customer}-{index}", "customer_id": customer, "occurred_at": at}
    match index % 3:
        case 0:
            moment = ("zmot", "fmot", "smot")[min(index, 2)]
            return {"type": "touchpoint", **base, "moment": moment, "channel": "app", "sentiment": 0.25}
        case 1:
            return {
                "type": "purchase",
                **base,
                "order_id": f"o-{index}",
                "amount": "12.50",
                "currency": "USD",
            }
        case _:
            return {"type": "survey", **base, "score": 1 + index % 10, "scale": "1-10"}


def _messages(names: TopicNames, events: Sequence[dict[str, Any]]) -> list[tuple[str, bytes, bytes]]:
    return [(names.for_type(e["type"]), e["customer_id"].encode(), json.dumps(e).encode()) for e in events]


async def _ends(kafka: dict[str, Any], topics: Sequence[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        if not tps:
            await consumer._client.force_metadata_update()  # noqa: SLF001  # no public refresh
            tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def _bytes_between(
    kafka: dict[str, Any], start: dict[TopicPartition, int], end: dict[TopicPartition, int]
) -> dict[str, int]:
    """Bytes of keys and values written to each topic between two sets of end offsets."""
    sizes: dict[str, int] = {}
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        wanted = {tp: (start.get(tp, 0), end[tp]) for tp in end if end[tp] > start.get(tp, 0)}
        if not wanted:
            return sizes
        consumer.assign(list(wanted))
        for tp, (first, _) in wanted.items():
            consumer.seek(tp, first)
        left = set(wanted)
        while left:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < wanted[tp][1]:
                        sizes[tp.topic] = (
                            sizes.get(tp.topic, 0) + len(record.key or b"") + len(record.value or b"")
                        )
            for tp in list(left):
                if await consumer.position(tp) >= wanted[tp][1]:
                    left.discard(tp)
        return sizes
    finally:
        await consumer.stop()


async def _wait_for(count: Callable[[], float], target: float, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while count() < target:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: the history stage's worker handled {count():.0f} of {target} events")
        # Each sample is an HTTP request the worker answers: every 50 ms, as the throughput
        # stage samples, so that sampling is a small part of the CPU measured.
        await asyncio.sleep(0.05)


async def history_stage(
    kafka: dict[str, Any],
    priors: Sequence[int],
    *,
    produce: Callable[[dict[str, Any], list[tuple[str, bytes, bytes]]], Any],
    start_worker: Callable[[str, int], Any],
    events_handled: Callable[[int], float],
    cpu_seconds: Callable[[int], float],
    free_port: Callable[[], int],
    partitions: int,
    tmp: Path,
) -> list[HistoryCost]:
    """One `HistoryCost` per history length in `priors`; the callables are the bench's own
    (its producer, worker and metric readers), so that every stage measures the same way."""
    costs = []
    for prior in priors:
        names = TopicNames(prefix=f"history{prior}.")
        await create_topics(kafka, names, partitions=partitions, replication_factor=1)
        customers = [f"h{prior}-{i:04d}" for i in range(CUSTOMERS)]
        await produce(kafka, _messages(names, [_event(c, i) for i in range(prior) for c in customers]))
        port = free_port()
        worker = start_worker(names.prefix, port)
        try:
            handled = functools.partial(events_handled, port)
            await _wait_for(handled, prior * CUSTOMERS, 900)
            # Everything the worker writes: all topics but the inputs (changelogs included).
            outputs = [t for t in names.all if t not in names.inputs]
            changelog = names.changelogs[0]
            before = await _ends(kafka, outputs)
            # What the worker spends idle (its fetch loops and timers, our samples), per
            # second: taken off the rounds' CPU, which at a few thousand events a second it
            # would otherwise dominate.
            idle_from, idle_cpu = time.perf_counter(), cpu_seconds(worker.pid)
            await asyncio.sleep(IDLE_SECONDS)
            idle = (cpu_seconds(worker.pid) - idle_cpu) / (time.perf_counter() - idle_from)
            started, cpu = time.perf_counter(), cpu_seconds(worker.pid)
            for round_ in range(ROUNDS):
                await produce(kafka, _messages(names, [_event(c, prior + round_) for c in customers]))
                target = (prior + round_ + 1) * CUSTOMERS
                await _wait_for(handled, target, 120)
            seconds = time.perf_counter() - started
            used = max(0.0, cpu_seconds(worker.pid) - cpu - idle * seconds)
            await asyncio.sleep(1.0)  # the last round's sends acknowledged and readable
            sizes = await _bytes_between(kafka, before, await _ends(kafka, outputs))
        finally:
            worker.terminate()
            worker.wait(30)
        events = ROUNDS * CUSTOMERS
        cost = HistoryCost(prior, events, seconds, used, sizes.get(changelog, 0), sum(sizes.values()))
        print(cost.line(), flush=True)
        costs.append(cost)
    return costs
