"""The second moment (SPEC.md, "The second moment") through the pure core: the rule on its
own, and the summary the page and `journey impact` show (the public `recovery/` set runs
through replay in test_impact.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from journey.customer import CustomerState
from journey.impact import contribution
from journey.recovery import at_risk, second_moment
from journey.scoring import ScoringRules, apply_event
from schemas.events import Touchpoint
from tests.unit.strategies import RATES

RULES = ScoringRules(rates=RATES)
START = datetime(2026, 5, 1, tzinfo=UTC)


def smot(event_id: str, hours: int, sentiment: str | None) -> Touchpoint:
    return Touchpoint(
        event_id=event_id,
        customer_id="c-1",
        occurred_at=START + timedelta(hours=hours),
        moment="smot",
        channel="app",
        sentiment=None if sentiment is None else Decimal(sentiment),
    )


def fold(*events: Touchpoint) -> CustomerState:
    state = CustomerState("c-1")
    for event in events:
        apply_event(state, event, RULES)
    return state


def test_the_rule_by_example() -> None:
    assert (
        fold(
            Touchpoint(event_id="z", customer_id="c-1", occurred_at=START, moment="zmot", channel="web")
        ).recovery()
        is None
    )
    assert fold(smot("a", 0, None), smot("b", 1, "0")).recovery() == "smooth"  # neither failure nor good
    assert fold(smot("a", 0, "-0.5")).recovery() == "unrecovered"
    assert fold(smot("a", 0, "-0.5"), smot("b", 1, "0.2")).recovery() == "recovered"
    # Strictly later: a good SMOT at the failure's own time does not recover it.
    assert fold(smot("a", 0, "-0.5"), smot("b", 0, "0.2")).recovery() == "unrecovered"
    # The latest failure counts, whatever order the events came in.
    late_failure = (smot("a", 0, "-0.5"), smot("b", 1, "0.9"), smot("c", 2, "-0.1"))
    assert fold(*late_failure).recovery() == "unrecovered"
    assert fold(*reversed(late_failure)).recovery() == "unrecovered"
    state = fold(*late_failure, smot("c", 2, "-0.1"))  # a duplicate counts once
    assert state.smot_failures == 2 and at_risk(state)
    assert not at_risk(fold(smot("a", 0, "-0.5"), smot("b", 1, "-0.9"), smot("c", 2, "0.3")))
    assert not at_risk(fold(smot("a", 0, "-0.5")))  # one failure is not yet "all the time"


def test_a_change_of_recovery_moves_the_customer_between_entries() -> None:
    state = fold(smot("a", 0, "0.5"))
    before = contribution(state)
    assert before is not None and ("recovery/smooth",) in before.keys
    apply_event(state, smot("b", 1, "-0.5"), RULES)
    after = contribution(state)
    assert after is not None and ("recovery/unrecovered",) in after.keys
    apply_event(state, smot("c", 2, "0.1"), RULES)
    again = contribution(state)
    assert again is not None and ("recovery/recovered",) in again.keys


def test_the_summary_of_the_expected_entries(recovery_conformance: Any) -> None:
    entries = {e["key"]: e for e in recovery_conformance.expected_impact if e["dimension"] == "recovery"}
    summary = second_moment(entries, 3)
    assert summary["failed"] == entries["recovered"]["customers"] + entries["unrecovered"]["customers"]
    assert summary["recovered"] == entries["recovered"]["customers"] == 4
    assert summary["recovery_rate"] == 0.25
    assert summary["at_risk"] == 3
    # Recovered customers' mean PPP (229.53) is far below smooth ones' (1429.49).
    assert summary["recovered_vs_smooth"] == pytest.approx(229.5275 / 1429.4876 - 1, abs=1e-4)
    assert "less in mean PPP than smooth ones" in summary["verdict"]
    paradox = second_moment(
        {"smooth": entries["smooth"], "recovered": {**entries["recovered"], "ppp": 9000.0}}, 0
    )
    assert "more in mean PPP" in paradox["verdict"] and paradox["recovered_vs_smooth"] > 0
    nothing = second_moment({}, 0)
    assert nothing["failed"] == 0 and nothing["recovery_rate"] is None and "Not enough" in nothing["verdict"]
