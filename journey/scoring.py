"""The scoring core: a customer state plus one event gives the new state and what to emit.

No I/O, no Kafka, no Faust: the stream pipeline and `journey replay` both call `apply_event`,
so streaming and replay agree by construction. Every score is a function of the set of the
customer's events (SPEC.md, "Scores"); only `version` depends on arrival order.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from journey.customer import CustomerState, format_us, to_us
from journey.decimals import EXACT, ZERO
from journey.decimals import round_cents as _round
from journey.money import FxRates
from schemas.events import Event, Purchase, Share, Survey, Touchpoint

__all__ = [
    "DAY_US",
    "ApplyResult",
    "ScoringRules",
    "apply_event",
    "csat_of",
    "fold_windows",
    "normalise_score",
    "ppp_update",
]

DAY_US = 86_400_000_000
_ONE = Decimal(1)
_TEN = Decimal(10)
_NINE_TENTHS = Decimal("0.9")
_NINE_QUARTERS = Decimal("2.25")
_MOMENT_INDEX = {"zmot": 0, "fmot": 1, "smot": 2}
_SMOT = 2
_UMOT = 3


@dataclass(frozen=True, slots=True)
class ScoringRules:
    """The knobs of the formulas (JOURNEY_CSAT_WINDOW_DAYS, _SENTIMENT_WEIGHT, FX rates)."""

    rates: FxRates
    csat_window_days: int = 90
    sentiment_weight: Decimal = _ONE
    cltv_window_days: int = 365
    # The windows in microseconds, read for every event: attributes, not properties (a
    # property call cost as much as the subtraction it served).
    csat_window_us: int = field(init=False, repr=False)
    cltv_window_us: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "csat_window_us", self.csat_window_days * DAY_US)
        object.__setattr__(self, "cltv_window_us", self.cltv_window_days * DAY_US)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What one event did: a duplicate changes nothing; `updated` means an update is due."""

    duplicate: bool
    updated: bool

    def update(self, state: CustomerState) -> dict[str, Any] | None:
        """The `ppp-updates` message this event made, built only when asked for."""
        return ppp_update(state) if self.updated else None


_DUPLICATE = ApplyResult(duplicate=True, updated=False)
_UNCHANGED = ApplyResult(duplicate=False, updated=False)
_UPDATED = ApplyResult(duplicate=False, updated=True)


def normalise_score(score: Decimal, scale: str) -> Decimal:
    """Any survey scale onto 1..10."""
    if scale == "0-10":
        return EXACT.add(_ONE, EXACT.multiply(_NINE_TENTHS, score))
    if scale == "1-5":
        return EXACT.add(_ONE, EXACT.multiply(_NINE_QUARTERS, EXACT.subtract(score, _ONE)))
    return score


def fold_windows(state: CustomerState, rules: ScoringRules) -> bool:
    """Drop what fell out of the windows now that `T` is `state.last_us`; whether money did."""
    csat_start = state.last_us - rules.csat_window_us
    surveys = state.window_surveys
    while surveys and surveys[0][0] < csat_start:
        state.window_survey_sum = EXACT.subtract(state.window_survey_sum, heapq.heappop(surveys)[1])
    sentiments = state.sentiments
    while sentiments and sentiments[0][0] < csat_start:
        state.sentiment_sum = EXACT.subtract(state.sentiment_sum, heapq.heappop(sentiments)[1])
    money_start = state.last_us - rules.cltv_window_us
    money = state.recent_money
    if not money or money[0][0] >= money_start:
        return False
    while money and money[0][0] < money_start:
        state.recent_sum = EXACT.subtract(state.recent_sum, heapq.heappop(money)[1])
    return True


def _add_sentiment(state: CustomerState, at: int, sentiment: Decimal | None, start: int) -> None:
    if sentiment is not None and at >= start:
        heapq.heappush(state.sentiments, (at, sentiment))
        state.sentiment_sum = EXACT.add(state.sentiment_sum, sentiment)
        if state.layout is not None:
            state.layout.sentiments.add((at, sentiment))


def _join(state: CustomerState, share_id: str) -> None:
    if share_id not in state.joined:
        state.joined.add(share_id)
        if state.layout is not None:
            state.layout.saw(None, share_id)


def _second_moment(state: CustomerState, at: int, sentiment: Decimal | None) -> None:
    """Count a SMOT touchpoint: its failure (sentiment below 0) or its good time (above 0).
    A change of `recovery` changes the customer's impact keys."""
    before = state.recovery()
    state.moments[_SMOT] += 1
    if sentiment is not None and sentiment < 0:
        state.smot_failures += 1
        if state.last_failure_us is None or at > state.last_failure_us:
            state.last_failure_us = at
    elif sentiment is not None and sentiment > 0 and (state.last_good_us is None or at > state.last_good_us):
        state.last_good_us = at
    if state.recovery() != before:
        state.entry_keys = None


def _fold_in(state: CustomerState, event: Event, at: int, rules: ScoringRules) -> None:
    csat_start = state.last_us - rules.csat_window_us
    if isinstance(event, Touchpoint):
        index = _MOMENT_INDEX[event.moment]
        if index == _SMOT:
            _second_moment(state, at, event.sentiment)
        else:
            state.moments[index] += 1
        _add_sentiment(state, at, event.sentiment, csat_start)
        if event.channel not in state.channels:
            state.channels.add(event.channel)
            state.entry_keys = None
        if event.campaign is not None and event.campaign not in state.campaigns:
            state.campaigns.add(event.campaign)
            state.entry_keys = None
        if event.referral_share_id is not None and event.moment == "zmot":
            _join(state, event.referral_share_id)
    elif isinstance(event, Share):
        _join(state, event.share_id)
        state.moments[_UMOT] += 1
        _add_sentiment(state, at, event.sentiment, csat_start)
    elif isinstance(event, Survey):
        state.surveys += 1
        score = normalise_score(event.score, event.scale)
        candidate = (at, event.event_id, score)
        # Two ids of one person may share an event_id: a tie of time and event_id goes to
        # the greater score, so that the choice stays a function of the set (docs/choices.md).
        if state.latest_survey is None or candidate > state.latest_survey:
            state.latest_survey = candidate
        if at >= csat_start:
            heapq.heappush(state.window_surveys, (at, score))
            state.window_survey_sum = EXACT.add(state.window_survey_sum, score)
            if state.layout is not None:
                state.layout.surveys.add((at, score))
    elif isinstance(event, Purchase):
        amount = EXACT.multiply(event.amount, rules.rates.rates[event.currency])
        if event.kind == "refund":
            state.refunds += 1
            amount = -amount
        else:
            state.purchases += 1
        state.lifetime_net = EXACT.add(state.lifetime_net, amount)
        if at >= state.last_us - rules.cltv_window_us:
            heapq.heappush(state.recent_money, (at, amount))
            state.recent_sum = EXACT.add(state.recent_sum, amount)
            if state.layout is not None:
                state.layout.money.add((at, amount))


def csat_of(state: CustomerState, rules: ScoringRules) -> Decimal:
    if state.surveys == 0 or state.latest_survey is None:
        return ZERO
    if state.window_surveys:
        reported = EXACT.divide(state.window_survey_sum, Decimal(len(state.window_surveys)))
    else:
        reported = state.latest_survey[2]
    sentiment = (
        EXACT.divide(state.sentiment_sum, Decimal(len(state.sentiments))) if state.sentiments else ZERO
    )
    blended = EXACT.add(reported, EXACT.multiply(rules.sentiment_weight, sentiment))
    return _round(min(max(blended, _ONE), _TEN))


def ppp_update(state: CustomerState) -> dict[str, Any]:
    """The `ppp-updates` message of the customer's latest update."""
    return {
        "customer_id": state.customer_id,
        "csat": float(state.csat),
        "cltv": float(state.cltv),
        "ppp": float(state.ppp),
        "previous_ppp": None if state.previous_ppp is None else float(state.previous_ppp),
        "cltv_365d": float(state.cltv_365d),
        "version": state.version,
        "cause_event_id": state.cause_event_id,
        "cause_type": state.cause_type,
        "moments": state.moments_dict(),
        "as_of": format_us(state.last_us),
    }


def apply_event(state: CustomerState, event: Event, rules: ScoringRules) -> ApplyResult:
    """Fold one validated event of `state.customer_id` into `state` (in place).

    A repeated `event_id` changes nothing. An update is due on the customer's first event
    and whenever a published score (csat, cltv, ppp, at two decimals) changes.
    """
    own = event.customer_id == state.customer_id
    seen = state.seen if own else state.seen_of(event.customer_id)
    if event.event_id in seen:
        return _DUPLICATE
    seen.add(event.event_id)
    if state.layout is not None:  # what the changelog takes of it (`journey.journal`)
        state.layout.saw("" if own else event.customer_id, event.event_id)
    at = to_us(event.occurred_at)
    first = state.version == 0
    money_left = False
    if first:
        state.first_us = state.last_us = at
    elif at > state.last_us:
        state.last_us = at
        money_left = fold_windows(state, rules)
    elif at < state.first_us:
        state.first_us = at
    _fold_in(state, event, at, rules)

    # The published scores are those of the inputs folded so far (an event either publishes
    # new ones or leaves them equal), so money is only rounded again when money moved: a
    # purchase, or the window's end leaving some behind.
    csat = csat_of(state, rules)
    paid = first or isinstance(event, Purchase)
    if paid or money_left:
        state.cltv_365d = _round(max(state.recent_sum, ZERO))
    cltv = _round(max(state.lifetime_net, ZERO)) if paid else state.cltv
    if not first and csat == state.csat and cltv == state.cltv:
        return _UNCHANGED
    ppp = _round(EXACT.multiply(csat, cltv))
    state.previous_ppp = None if first else state.ppp
    state.csat, state.cltv, state.ppp = csat, cltv, ppp
    state.version += 1
    state.cause_event_id = event.event_id
    state.cause_type = event.type
    return _UPDATED
