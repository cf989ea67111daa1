"""A worker's metrics, name by name, kind by kind, label by label, against SPEC.md."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from stream.serving.metrics import JourneyMetrics
from tests.fixtures.conformance import ROOT

# The contract as the repository carries it (tests/unit/test_docs.py keeps it equal to the shared one).
SPEC = ROOT / "docs" / "SPEC.md"


def spec_metrics(path: Path) -> dict[str, tuple[str, set[str]]]:
    section = path.read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    table = {}
    for name, kind, labels in re.findall(
        r"^\| `(journey_\w+)` \| (\w+) \|\s*([^|]*?)\s*\|", section, re.MULTILINE
    ):
        # "`topic`, `outcome` = `processed`, ...": the names are what comes before "=".
        table[name] = (kind, set(re.findall(r"`(\w+)`", labels.split("=")[0])))
    return table


def test_exported_metrics_match_the_spec_table() -> None:
    wanted = spec_metrics(SPEC)
    assert len(wanted) == 10
    registry = CollectorRegistry()
    JourneyMetrics(registry)
    families = {}
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels: set[str] = set()
        for collector_name, collector in registry._names_to_collectors.items():
            if collector_name == family.name or collector_name == name:
                labels = set(getattr(collector, "_labelnames", ()))
        families[name] = (family.type, labels)
    for name, (kind, labels) in wanted.items():
        assert name in families, name
        assert families[name] == (kind, labels), name


def test_a_fresh_registry_per_instance() -> None:
    first, second = JourneyMetrics(), JourneyMetrics()
    first.events.labels("surveys", "invalid").inc()
    assert (
        second.registry.get_sample_value("journey_events_total", {"topic": "surveys", "outcome": "invalid"})
        is None
    )
    assert (
        first.registry.get_sample_value("journey_events_total", {"topic": "surveys", "outcome": "invalid"})
        == 1
    )


def test_a_recorded_batch_exposes_what_observing_each_event_would() -> None:
    """`JourneyMetrics.record` bins a batch itself; the exposition must not tell."""
    from prometheus_client import generate_latest

    from stream.serving.metrics import BatchTally

    lags = [0.0, 0.004, 0.05, 0.05, 3.0, 7e5, 1e9]
    csats = [1.0, 5.5, 10.0]
    ppps = [0.0, 99.5, 2e6]
    tally = BatchTally()
    for _ in range(5):
        tally.event("touchpoints", "processed")
    tally.event("touchpoints", "invalid")
    tally.event("surveys", "duplicate")
    tally.event("surveys", "processed")
    tally.lags["touchpoints"].extend(lags)
    for csat, ppp in zip(csats, ppps, strict=True):
        tally.update_sent(csat, ppp)
    batched = JourneyMetrics()
    batched.record(tally, seconds=0.008)

    each = JourneyMetrics()
    for topic, outcome, count in (("touchpoints", "processed", 5), ("touchpoints", "invalid", 1)):
        each.events.labels(topic, outcome).inc(count)
    each.events.labels("surveys", "duplicate").inc()
    each.events.labels("surveys", "processed").inc()
    for _ in range(8):  # 0.008 s over the batch's 8 messages
        each.processing.labels("touchpoints" if _ < 6 else "surveys").observe(0.001)
    for lag in lags:
        each.event_lag.labels("touchpoints").observe(lag)
    for csat, ppp in zip(csats, ppps, strict=True):
        each.ppp_updates.inc()
        each.csat.observe(csat)
        each.ppp.observe(ppp)

    def exposition(metrics: JourneyMetrics) -> list[str]:
        # Sums are floats added in another order: compare them rounded.
        lines = generate_latest(metrics.registry).decode().splitlines()
        return [
            f"{line.rsplit(' ', 1)[0]} {float(line.rsplit(' ', 1)[1]):.9g}"
            if not line.startswith("#")
            else line
            for line in lines
            if "_created" not in line
        ]

    assert exposition(batched) == exposition(each)
