"""The Grafana dashboard asks only for metrics that a worker exports or the rules record."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest

from stream.serving.metrics import JourneyMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PANELS = {
    "Events/s by topic and outcome",
    "PPP updates/s",
    "Referral links/s",
    "Dead letters/s by topic",
    "Event lag (receive time - occurred_at)",
    "Processing time per event",
    "Consumer lag by partition",
    "Customers per worker",
    "CSAT of published updates",
    "PPP of published updates",
}


def exported_names() -> set[str]:
    metrics = JourneyMetrics()
    metrics.events.labels("touchpoints", "processed").inc()
    metrics.event_lag.labels("touchpoints").observe(1)
    metrics.processing.labels("touchpoints").observe(0.001)
    metrics.set_lag({("touchpoints", 0): 3})
    text = generate_latest(metrics.registry).decode()
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }


def recorded_names() -> set[str]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_every_panel_queries_only_known_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "journey.json").read_text())
    known = exported_names() | recorded_names()
    titles = set()
    for panel in dashboard["panels"]:
        titles.add(panel["title"])
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bjourney[_:][A-Za-z0-9_:]*", target["expr"]))
            assert names, target["expr"]
            assert names <= known, (panel["title"], names - known)
    assert titles >= PANELS


def test_recording_rules_are_built_from_exported_metrics() -> None:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())["groups"]
    exported = exported_names() | {"up"}
    for group in groups:
        for rule in group["rules"]:
            used = set(re.findall(r"\bjourney_[A-Za-z0-9_]*", rule["expr"]))
            assert used <= exported, (rule.get("record") or rule.get("alert"), used - exported)


def test_provisioning_points_at_the_dashboard() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "journey.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert source["datasources"][0]["uid"] == "prometheus"
