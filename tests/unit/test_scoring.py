"""Worked examples of every formula of SPEC.md "Scores" and of when updates are due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from journey.customer import CustomerState
from journey.money import FxRates
from journey.scoring import ScoringRules, apply_event, normalise_score
from schemas.events import Event, Purchase, Share, Survey, Touchpoint

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RULES = ScoringRules(rates=FxRates("USD", {"EUR": Decimal("1.08"), "JPY": Decimal("0.0066")}))
_ids = iter(range(10**9))


def survey(score: Any, scale: str = "1-10", at: datetime = T, event_id: str | None = None) -> Survey:
    return Survey(
        event_id=event_id or f"s{next(_ids)}",
        customer_id="c",
        occurred_at=at,
        score=Decimal(str(score)),
        scale=scale,
    )


def touch(sentiment: Any = None, at: datetime = T, moment: str = "smot") -> Touchpoint:
    return Touchpoint(
        event_id=f"t{next(_ids)}",
        customer_id="c",
        occurred_at=at,
        moment=moment,
        channel="app",
        sentiment=None if sentiment is None else Decimal(str(sentiment)),
    )


def buy(amount: str, currency: str = "USD", at: datetime = T, kind: str = "purchase") -> Purchase:
    return Purchase(
        event_id=f"p{next(_ids)}",
        customer_id="c",
        occurred_at=at,
        order_id="o",
        amount=Decimal(amount),
        currency=currency,
        kind=kind,
    )


def run(*events: Event, rules: ScoringRules = RULES) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    state = CustomerState("c")
    updates = [u for e in events if (u := apply_event(state, e, rules).update(state))]
    return state.view(), updates


@pytest.mark.parametrize(
    ("score", "scale", "normalised"),
    [
        (10, "1-10", "10"),
        (0, "0-10", "1"),
        (10, "0-10", "10.0"),
        (5, "0-10", "5.5"),
        (1, "1-5", "1"),
        (5, "1-5", "10.00"),
        (3, "1-5", "5.50"),
    ],
)
def test_scales_normalise_onto_one_to_ten(score: int, scale: str, normalised: str) -> None:
    assert normalise_score(Decimal(score), scale) == Decimal(normalised)


def test_csat_is_zero_without_surveys_whatever_the_sentiment() -> None:
    view, _ = run(touch(0.9), buy("10"))
    assert view["csat"] == 0.0 and view["ppp"] == 0.0 and view["cltv"] == 10.0


def test_csat_is_the_mean_of_surveys_in_the_window_plus_mean_sentiment() -> None:
    view, _ = run(survey(8), survey(3, "1-5"), touch(0.5), touch(-0.1))
    # (8 + 5.5) / 2 + (0.5 - 0.1) / 2 = 6.75 + 0.2
    assert view["csat"] == 6.95


def test_window_is_inclusive_at_exactly_ninety_days() -> None:
    start = T - timedelta(days=90)
    view, _ = run(survey(2, at=start), survey(10), touch(0.0, at=start - timedelta(microseconds=1)))
    assert view["csat"] == 6.0
    view, _ = run(survey(2, at=start - timedelta(microseconds=1)), survey(10))
    assert view["csat"] == 10.0


def test_window_drops_what_left_it_when_t_moves_on() -> None:
    early = T - timedelta(days=200)
    # Arrives first, while T is still early: inside the window then, outside it at the end.
    view, _ = run(survey(2, at=early), touch(-1, at=early), survey(9))
    assert view["csat"] == 9.0


def test_latest_survey_counts_when_none_is_in_the_window() -> None:
    old = T - timedelta(days=300)
    view, _ = run(survey(4, at=old - timedelta(days=1)), survey(6, at=old), touch(0.5))
    assert view["csat"] == 6.5  # 6 (latest survey) + 0.5 (sentiment in the window)


def test_a_tie_between_latest_surveys_goes_to_the_greater_event_id() -> None:
    old = T - timedelta(days=300)
    for order in (1, -1):
        pair = [survey(4, at=old, event_id="a"), survey(7, at=old, event_id="b")][::order]
        view, _ = run(*pair, touch(at=T))
        assert view["csat"] == 7.0


def test_csat_is_clamped_to_one_and_ten() -> None:
    assert run(survey(10), touch(1))[0]["csat"] == 10.0
    assert run(survey(1), touch(-1))[0]["csat"] == 1.0
    weighted = ScoringRules(rates=RULES.rates, sentiment_weight=Decimal(3))
    assert run(survey(5), touch(-0.5), rules=weighted)[0]["csat"] == 3.5


def test_shares_carry_sentiment_and_count_as_umot() -> None:
    share = Share(
        event_id="sh",
        customer_id="c",
        occurred_at=T,
        share_id="x",
        channel="social",
        sentiment=Decimal("-0.5"),
    )
    view, _ = run(survey(8), share, touch(moment="zmot"))
    assert view["csat"] == 7.5
    assert view["moments"] == {"zmot": 1, "fmot": 0, "smot": 0, "umot": 1}


def test_cltv_converts_currencies_in_decimal_and_floors_at_zero() -> None:
    view, _ = run(buy("100", "EUR"), buy("1000", "JPY"), buy("0.1"), buy("0.2"))
    assert view["cltv"] == 114.9  # 108 + 6.6 + 0.3, and 0.1 + 0.2 is exactly 0.3 here
    view, _ = run(buy("10"), buy("25", kind="refund"), survey(9))
    assert view["cltv"] == 0.0 and view["refunds"] == 1 and view["purchases"] == 1


def test_cltv_365d_keeps_only_the_last_year_and_lifetime_keeps_all() -> None:
    year = T - timedelta(days=365)
    view, _ = run(buy("50", at=year), buy("20", at=year - timedelta(microseconds=1)), buy("5"))
    assert view["cltv"] == 75.0
    assert view["cltv_365d"] == 55.0


def test_ppp_is_the_product_of_published_scores_rounded_half_even() -> None:
    # csat 7.25, cltv 0.10 -> 0.725 -> 0.72 (half-even), not 0.73
    view, _ = run(survey(7), touch(0.25), buy("0.1"))
    assert (view["csat"], view["cltv"], view["ppp"]) == (7.25, 0.1, 0.72)


def test_updates_come_on_the_first_event_and_on_changes_only() -> None:
    first = touch(moment="zmot")
    state = CustomerState("c")
    result = apply_event(state, first, RULES).update(state)
    assert result is not None and result["version"] == 1 and result["previous_ppp"] is None
    assert apply_event(state, touch(moment="fmot", at=T + timedelta(hours=1)), RULES).update(state) is None
    assert apply_event(state, first, RULES).duplicate
    update = apply_event(state, buy("10"), RULES).update(state)
    assert update is not None and update["version"] == 2 and update["cltv"] == 10.0
    assert update["moments"] == {"zmot": 1, "fmot": 1, "smot": 0, "umot": 0}
    assert update["as_of"] == "2026-06-01T13:00:00.000000Z"
    assert state.view()["first_seen"] == "2026-06-01T12:00:00.000000Z"
