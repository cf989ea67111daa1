"""The Prometheus config and rules, checked and unit-tested by Debian's real promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.tools import require_tool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "rules.yml"

# (alert, series that make it fire, series that must not) at 1-minute steps.
CASES: dict[str, tuple[dict[str, str], dict[str, str], str]] = {
    "JourneyWorkerDown": (
        {'up{job="journey",instance="w1:6066"}': "1 1 0x20"},
        {'up{job="journey",instance="w1:6066"}': "1x20"},
        "5m",
    ),
    "JourneyConsumerLagGrowing": (
        {
            'journey_consumer_lag{job="journey",topic="touchpoints",partition="0"}': "0+50x40",
            'journey_consumer_lag{job="journey",topic="touchpoints",partition="1"}': "10x40",
        },
        {'journey_consumer_lag{job="journey",topic="touchpoints",partition="0"}': "5000x40"},
        "30m",
    ),
    "JourneyBrokerUnreachable": (
        {'journey_broker_silence_seconds{job="journey",instance="w1:6066"}': "0.5x5 5+10x20"},
        {'journey_broker_silence_seconds{job="journey",instance="w1:6066"}': "0.5x10 20 0.5x10"},
        "10m",
    ),
    "JourneyDeadLetterRateHigh": (
        {
            'journey_events_total{job="journey",topic="surveys",outcome="invalid"}': "0+2x30",
            'journey_events_total{job="journey",topic="surveys",outcome="processed"}': "0+100x30",
        },
        {
            'journey_events_total{job="journey",topic="surveys",outcome="invalid"}': "0+0.5x30",
            'journey_events_total{job="journey",topic="surveys",outcome="processed"}': "0+100x30",
        },
        "20m",
    ),
    "JourneyNoPppUpdates": (
        {
            'journey_events_total{job="journey",topic="touchpoints",outcome="processed"}': "0+100x40",
            'journey_ppp_updates_total{job="journey"}': "0x40",
        },
        {
            'journey_events_total{job="journey",topic="touchpoints",outcome="processed"}': "0+100x40",
            'journey_ppp_updates_total{job="journey"}': "0+40x40",
        },
        "30m",
    ),
    "JourneyProcessingSlow": (
        {
            'journey_processing_seconds_bucket{job="journey",topic="purchases",le="0.1"}': "0+90x30",
            'journey_processing_seconds_bucket{job="journey",topic="purchases",le="0.25"}': "0+97x30",
            'journey_processing_seconds_bucket{job="journey",topic="purchases",le="0.5"}': "0+100x30",
            'journey_processing_seconds_bucket{job="journey",topic="purchases",le="+Inf"}': "0+100x30",
        },
        {
            'journey_processing_seconds_bucket{job="journey",topic="purchases",le="0.001"}': "0+100x30",
            'journey_processing_seconds_bucket{job="journey",topic="purchases",le="0.25"}': "0+100x30",
            'journey_processing_seconds_bucket{job="journey",topic="purchases",le="+Inf"}': "0+100x30",
        },
        "20m",
    ),
}


def _alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def _render(text: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool")
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_config_and_rules_are_valid() -> None:
    checked = _promtool("check", "config", "prometheus.yml", cwd=DEPLOY)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = _promtool("check", "rules", "rules.yml", cwd=DEPLOY)
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_every_alert_has_a_case_and_a_runbook() -> None:
    alerts = _alerts()
    assert set(alerts) == set(CASES)
    for rule in alerts.values():
        assert len(rule["annotations"]["runbook"]) > 80
        assert rule["labels"]["severity"] in {"page", "ticket"}


@pytest.mark.parametrize("alert", sorted(CASES))
def test_alert_fires_and_stays_quiet(alert: str, tmp_path: Path) -> None:
    rule = _alerts()[alert]
    firing, quiet, at = CASES[alert]
    labels = {"job": "journey"} | (
        {"instance": "w1:6066"} if alert in ("JourneyWorkerDown", "JourneyBrokerUnreachable") else {}
    )
    expected = {
        "exp_labels": {**labels, **rule["labels"]},
        "exp_annotations": {k: _render(v, labels) for k, v in rule["annotations"].items()},
    }

    def case(series: dict[str, str], alerts: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": alerts}],
        }

    (tmp_path / "rules.yml").write_text(RULES.read_text())
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [case(firing, [expected]), case(quiet, [])],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = _promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
