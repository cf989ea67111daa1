"""Every Prometheus metric of a worker, in one object on an injectable registry.

Agents call the methods here; nothing else creates a metric. Tests pass a fresh registry.
Names, kinds and labels are the public contract of SPEC.md ("Metrics").
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["BatchTally", "JourneyMetrics", "observe_all"]

# Event lag spans a wide range: live traffic is sub-second, a backfill days old.
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400, 604800)
# Handling one event is tens of microseconds to a few milliseconds; the 250 ms alert sits inside.
_PROCESSING_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
)  # fmt: skip
_CSAT_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
_PPP_BUCKETS = (0, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 1000000)


def observe_all(
    histogram: Any, values: Sequence[float], *, each: float | None = None, count: int = 0
) -> None:
    """`histogram.observe(v)` for every value (or `count` times `each`), in one pass.

    prometheus_client takes a lock per bucket increment and walks the bounds per value:
    about 2 microseconds an observation, which at tens of thousands of events a second is
    a tenth of a worker's time. Binned here first, it is one increment per bucket a batch.
    Reaches into the child's `_upper_bounds`/`_buckets`/`_sum` (stable since 0.4, and
    `tests/unit/test_metrics.py` compares the exposition with per-value observations).
    """
    bounds = histogram._upper_bounds  # noqa: SLF001
    bins = [0] * len(bounds)
    for value in values:
        bins[bisect_left(bounds, value)] += 1
    total = float(sum(values))
    if each is not None and count:
        bins[bisect_left(bounds, each)] += count
        total += each * count
    for index, hits in enumerate(bins):
        if hits:
            histogram._buckets[index].inc(hits)  # noqa: SLF001
    histogram._sum.inc(total)  # noqa: SLF001


@dataclass(slots=True)
class BatchTally:
    """What one batch of input did, counted in plain Python; `JourneyMetrics.record` applies it."""

    outcomes: Tally[tuple[str, str]] = field(default_factory=Tally)
    lags: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    csats: list[float] = field(default_factory=list)
    ppps: list[float] = field(default_factory=list)

    def event(self, topic: str, outcome: str) -> None:
        self.outcomes[topic, outcome] += 1

    def update_sent(self, csat: float, ppp: float) -> None:
        self.csats.append(csat)
        self.ppps.append(ppp)


class JourneyMetrics:
    """The worker's metrics; `registry` is what `/metrics` exposes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "journey_events_total",
            "Input messages handled (outcome: processed, duplicate, invalid, or erased: an event an earlier erasure request removes).",
            ["topic", "outcome"],
            registry=r,
        )
        self.ppp_updates = Counter("journey_ppp_updates_total", "Messages sent to ppp-updates.", registry=r)
        self.referral_links = Counter(
            "journey_referral_links_total", "Messages sent to referral-links.", registry=r
        )
        self.self_referrals = Counter(
            "journey_self_referrals_total",
            "ZMOT touchpoints naming the customer's own share.",
            registry=r,
        )
        self.impact_updates = Counter("journey_impact_updates_total", "Messages sent to impact.", registry=r)
        self.merges = Counter("journey_merges_total", "Messages sent to merges.", registry=r)
        self.event_lag = Histogram(
            "journey_event_lag_seconds",
            "Receive time minus occurred_at.",
            ["topic"],
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.processing = Histogram(
            "journey_processing_seconds",
            "Time to handle one event.",
            ["topic"],
            buckets=_PROCESSING_BUCKETS,
            registry=r,
        )
        self.customers = Gauge("journey_customers", "Customers held by this worker.", registry=r)
        # Not in SPEC.md's table: how long ago a broker last answered this worker (any
        # request), so that an alert can tell a cut connection from an idle stream.
        self.broker_silence = Gauge(
            "journey_broker_silence_seconds",
            "Seconds since a broker last answered one of this worker's requests.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "journey_consumer_lag", "Messages not yet consumed.", ["topic", "partition"], registry=r
        )
        self.csat = Histogram(
            "journey_csat", "CSAT of each published update.", buckets=_CSAT_BUCKETS, registry=r
        )
        self.ppp = Histogram("journey_ppp", "PPP of each published update.", buckets=_PPP_BUCKETS, registry=r)

    def record(self, tally: BatchTally, seconds: float) -> None:
        """Apply one batch: `seconds` is shared out evenly over the events it handled."""
        handled: Tally[str] = Tally()
        for (topic, outcome), count in tally.outcomes.items():
            self.events.labels(topic, outcome).inc(count)
            handled[topic] += count
        total = sum(handled.values())
        for topic, count in handled.items():
            observe_all(self.processing.labels(topic), (), each=seconds / total, count=count)
        for topic, lags in tally.lags.items():
            observe_all(self.event_lag.labels(topic), lags)
        if tally.csats:
            self.ppp_updates.inc(len(tally.csats))
            observe_all(self.csat, tally.csats)
            observe_all(self.ppp, tally.ppps)

    def set_lag(self, lags: dict[tuple[str, int], int]) -> None:
        """Replace the lag series with this refresh's, dropping revoked partitions."""
        self.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)
