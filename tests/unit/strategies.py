"""Hypothesis strategies for valid events, spread over two years so that every window matters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import strategies as st

from journey.money import FxRates
from schemas.events import Event, Purchase, Share, Survey, Touchpoint

RATES = FxRates("USD", {"EUR": Decimal("1.0825"), "GBP": Decimal("1.2731"), "JPY": Decimal("0.006634")})
BASE = datetime(2026, 1, 1, tzinfo=UTC)

timestamps = st.builds(
    lambda days, seconds, micros: BASE + timedelta(days=days, seconds=seconds, microseconds=micros),
    st.integers(0, 800),
    st.integers(0, 86_399),
    st.sampled_from([0, 500_000, 123_456]),
)
# Boundaries of the windows are the interesting places: exactly 90 and 365 days apart.
edge_days = st.sampled_from([0, 89, 90, 90, 91, 364, 365, 365, 366])
sentiments = st.none() | st.decimals(min_value=-1, max_value=1, places=3)
# Impact keys, some holding what must survive URLs and topic keys: `/`, `%`, spaces, non-ASCII.
channels = st.sampled_from(["web", "store", "e/mail"])
campaigns = st.none() | st.sampled_from(["spring", "été 2026", "b2b/x", "50%"])
amounts = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(100_000), places=4)


@st.composite
def scored(draw: st.DrawFn) -> tuple[Decimal, str]:
    scale = draw(st.sampled_from(["1-10", "0-10", "1-5"]))
    low, high = {"1-10": (1, 10), "0-10": (0, 10), "1-5": (1, 5)}[scale]
    score = draw(st.integers(low, high).map(Decimal) | st.decimals(min_value=low, max_value=high, places=1))
    return score, scale


@st.composite
def customer_events(draw: st.DrawFn, customer_id: str = "c-1", max_size: int = 30) -> list[Event]:
    """Valid events of one customer with unique event_ids."""
    count = draw(st.integers(1, max_size))
    # The first event sits at the anchor and no event is later, so T is the anchor and the
    # edge offsets below land exactly on (and one microsecond around) the window starts.
    anchor = draw(timestamps) + timedelta(days=800)
    events: list[Event] = []
    for index in range(count):
        if index == 0:
            at = anchor
        elif draw(st.booleans()):
            nudge = timedelta(microseconds=draw(st.sampled_from([0, 1, -1])))
            at = min(anchor, anchor - timedelta(days=draw(edge_days)) + nudge)
        else:
            at = anchor - (draw(timestamps) - BASE)
        common = {"event_id": f"e-{index}", "customer_id": customer_id, "occurred_at": at}
        kind = draw(st.sampled_from(["touchpoint", "purchase", "survey", "share"]))
        if kind == "touchpoint":
            events.append(
                Touchpoint(
                    **common,
                    moment=draw(st.sampled_from(["zmot", "fmot", "smot"])),
                    channel=draw(channels),
                    campaign=draw(campaigns),
                    sentiment=draw(sentiments),
                )
            )
        elif kind == "purchase":
            events.append(
                Purchase(
                    **common,
                    order_id=f"o-{index}",
                    amount=draw(amounts),
                    currency=draw(st.sampled_from(sorted(RATES.rates))),
                    kind=draw(st.sampled_from(["purchase", "purchase", "refund"])),
                )
            )
        elif kind == "survey":
            score, scale = draw(scored())
            events.append(Survey(**common, score=score, scale=scale))
        else:
            events.append(
                Share(
                    **common,
                    share_id=f"s-{customer_id}-{index}",
                    channel=draw(st.sampled_from(["social", "e-mail"])),
                    sentiment=draw(sentiments),
                )
            )
    return events


@st.composite
def deliveries(draw: st.DrawFn, events: list[Event]) -> list[Event]:
    """The same events in any order, some delivered more than once (at-least-once)."""
    repeated = draw(st.lists(st.sampled_from(events), max_size=len(events))) if events else []
    return draw(st.permutations(events + repeated))
