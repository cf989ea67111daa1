"""A worker's metrics, name by name, kind by kind, label by label, against SPEC.md."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from stream.metrics import JourneyMetrics
from tests.fixtures.conformance import ROOT

SPEC = next(
    p for p in (ROOT.parent / "shared" / "SPEC.md", ROOT / "tests" / "data" / "SPEC.md") if p.exists()
)


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
    assert len(wanted) == 8
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
    first.event("surveys", "invalid")
    assert (
        second.registry.get_sample_value("journey_events_total", {"topic": "surveys", "outcome": "invalid"})
        is None
    )
    assert (
        first.registry.get_sample_value("journey_events_total", {"topic": "surveys", "outcome": "invalid"})
        == 1
    )
