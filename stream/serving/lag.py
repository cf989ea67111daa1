"""Periodic gauges: consumer lag per input partition and customers held by this worker."""

from __future__ import annotations

import contextlib
from typing import Any

import faust

from stream.kafka.silence import seconds_since_a_broker_answered
from stream.serving.metrics import JourneyMetrics

__all__ = ["register_lag_timer"]


def consumer_lags(consumer: Any, topics: set[str]) -> dict[tuple[str, int], int]:
    """End offset minus committed offset for each assigned partition of `topics`.

    The end offset is the high watermark of the latest fetch, which is right on the embedded
    broker, where ListOffsets answers short (BROKER-NOTES.md). Where everything read is
    committed, what lies between the commit and the consumer's position is transaction
    markers (`BatchingConsumer.caught_up_position`): no lag.
    """
    lags: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        if tp.topic not in topics:
            continue
        highwater = None
        with contextlib.suppress(Exception):  # not fetched yet, or the partition just moved
            highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        committed = consumer._committed_offset.get(tp) or 0  # noqa: SLF001  # Faust keeps it only here
        caught_up = getattr(consumer, "caught_up_position", None)
        position = caught_up(tp) if caught_up is not None else None
        lags[(tp.topic, tp.partition)] = max(0, highwater - max(committed, position or 0))
    return lags


def register_lag_timer(
    app: faust.App, metrics: JourneyMetrics, topics: set[str], customers: Any, interval: float
) -> None:
    @app.timer(interval=interval, name="journey.lag")
    async def refresh() -> None:
        metrics.set_lag(consumer_lags(app.consumer, topics))
        metrics.customers.set(len(customers.data))
        silence = seconds_since_a_broker_answered()
        if silence is not None:
            metrics.broker_silence.set(silence)
