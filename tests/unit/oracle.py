"""A second, deliberately naive reading of SPEC.md "Scores": every formula straight from the set
of events, with no folding, heaps or running sums. The core must agree with it."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from journey.money import FxRates
from schemas.events import Event, Purchase, Share, Survey, Touchpoint


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def _normalise(survey: Survey) -> Decimal:
    if survey.scale == "0-10":
        return 1 + Decimal("0.9") * survey.score
    if survey.scale == "1-5":
        return 1 + Decimal("2.25") * (survey.score - 1)
    return survey.score


def oracle_state(
    events: list[Event], rates: FxRates, *, window_days: int = 90, weight: Decimal = Decimal(1)
) -> dict[str, Any]:
    """The customer state of SPEC.md for the SET of `events` (first of each event_id wins)."""
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    evs = list(unique.values())
    with localcontext() as ctx:
        ctx.prec = 80
        t = max(e.occurred_at for e in evs)
        start = t - timedelta(days=window_days)
        surveys = [e for e in evs if isinstance(e, Survey)]
        if not surveys:
            csat = Decimal(0)
        else:
            inside = [_normalise(s) for s in surveys if s.occurred_at >= start]
            if inside:
                reported = sum(inside, Decimal(0)) / len(inside)
            else:
                latest = max(surveys, key=lambda s: (s.occurred_at, s.event_id))
                reported = _normalise(latest)
            sentiments = [
                e.sentiment
                for e in evs
                if isinstance(e, Touchpoint | Share) and e.sentiment is not None and e.occurred_at >= start
            ]
            sentiment = sum(sentiments, Decimal(0)) / len(sentiments) if sentiments else Decimal(0)
            csat = _cents(min(max(reported + weight * sentiment, Decimal(1)), Decimal(10)))

        def money(items: list[Purchase]) -> Decimal:
            total = Decimal(0)
            for p in items:
                value = p.amount * rates.rates[p.currency]
                total += -value if p.kind == "refund" else value
            return _cents(max(total, Decimal(0)))

        purchases = [e for e in evs if isinstance(e, Purchase)]
        cltv = money(purchases)
        cltv_365d = money([p for p in purchases if p.occurred_at >= t - timedelta(days=365)])
        ppp = _cents(csat * cltv)
    moments = {"zmot": 0, "fmot": 0, "smot": 0, "umot": 0}
    for e in evs:
        if isinstance(e, Touchpoint):
            moments[e.moment] += 1
        elif isinstance(e, Share):
            moments["umot"] += 1
    smots = [e for e in evs if isinstance(e, Touchpoint) and e.moment == "smot"]
    failures = [e.occurred_at for e in smots if e.sentiment is not None and e.sentiment < 0]
    goods = [e.occurred_at for e in smots if e.sentiment is not None and e.sentiment > 0]
    if not smots:
        recovery = None
    elif not failures:
        recovery = "smooth"
    else:
        recovery = "recovered" if goods and max(goods) > max(failures) else "unrecovered"
    stamp = lambda d: d.isoformat(timespec="microseconds").replace("+00:00", "Z")  # noqa: E731
    return {
        "customer_id": evs[0].customer_id,
        "csat": float(csat),
        "cltv": float(cltv),
        "ppp": float(ppp),
        "cltv_365d": float(cltv_365d),
        "moments": moments,
        "as_of": stamp(t),
        "surveys": len(surveys),
        "purchases": sum(1 for p in purchases if p.kind == "purchase"),
        "refunds": sum(1 for p in purchases if p.kind == "refund"),
        "first_seen": stamp(min(e.occurred_at for e in evs)),
        "last_seen": stamp(t),
        "campaigns": sorted(
            {e.campaign for e in evs if isinstance(e, Touchpoint) and e.campaign is not None}
        ),
        "channels": sorted({e.channel for e in evs if isinstance(e, Touchpoint)}),
        # One customer's events make no referral link to it (links join two customers).
        "referred_by": [],
        "referral_channels": [],
        "smot_failures": len(failures),
        "recovery": recovery,
        "aliases": [],
    }
