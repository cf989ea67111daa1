"""Every Prometheus metric of a worker, in one object on an injectable registry.

Agents call the methods here; nothing else creates a metric. Tests pass a fresh registry.
Names, kinds and labels are the public contract of SPEC.md ("Metrics").
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["JourneyMetrics"]

# Event lag spans a wide range: live traffic is sub-second, a backfill days old.
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400, 604800)
# Handling one event is tens of microseconds to a few milliseconds; the 250 ms alert sits inside.
_PROCESSING_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
)  # fmt: skip
_CSAT_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
_PPP_BUCKETS = (0, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 1000000)


class JourneyMetrics:
    """The worker's metrics; `registry` is what `/metrics` exposes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "journey_events_total", "Input messages handled.", ["topic", "outcome"], registry=r
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
        self.consumer_lag = Gauge(
            "journey_consumer_lag", "Messages not yet consumed.", ["topic", "partition"], registry=r
        )
        self.csat = Histogram(
            "journey_csat", "CSAT of each published update.", buckets=_CSAT_BUCKETS, registry=r
        )
        self.ppp = Histogram("journey_ppp", "PPP of each published update.", buckets=_PPP_BUCKETS, registry=r)

    def event(self, topic: str, outcome: str) -> None:
        self.events.labels(topic, outcome).inc()

    def update_sent(self, csat: float, ppp: float) -> None:
        self.ppp_updates.inc()
        self.csat.observe(csat)
        self.ppp.observe(ppp)

    def set_lag(self, lags: dict[tuple[str, int], int]) -> None:
        """Replace the lag series with this refresh's, dropping revoked partitions."""
        self.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)
