"""Properties of the core: any order, any duplicates, the same final state, equal to the oracle."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journey.customer import CustomerState, decode_state, encode_state
from journey.referrals import ShareJoin, apply_sighting, decode_join, encode_join, sighting_for
from journey.scoring import ScoringRules, apply_event
from schemas.events import Event, Share, Touchpoint
from tests.unit.oracle import oracle_state
from tests.unit.strategies import RATES, customer_events, deliveries

RULES = ScoringRules(rates=RATES)
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fold(events: list[Event], rules: ScoringRules = RULES) -> tuple[CustomerState, list[dict[str, Any]]]:
    state = CustomerState(events[0].customer_id)
    updates = []
    for event in events:
        result = apply_event(state, event, rules)
        update = result.update(state)
        if update:
            updates.append(update)
    return state, updates


def without_version(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k != "version"}


@PROFILE
@given(st.data())
def test_any_order_and_duplicates_give_the_oracle_state(data: st.DataObject) -> None:
    events = data.draw(customer_events())
    delivered = data.draw(deliveries(events))
    state, _ = fold(delivered)
    assert without_version(state.view()) == oracle_state(events, RATES)


@PROFILE
@given(st.data())
def test_two_orders_fold_to_equal_states(data: st.DataObject) -> None:
    events = data.draw(customer_events())
    first, _ = fold(data.draw(deliveries(events)))
    second, _ = fold(data.draw(deliveries(events)))
    # Not only the published view: the folded internals agree too (bar version and causes).
    for state in (first, second):
        state.version = 0
        state.cause_event_id = state.cause_type = ""
        state.previous_ppp = None
        state.window_surveys.sort()
        state.sentiments.sort()
        state.recent_money.sort()
    assert first == second


@PROFILE
@given(st.data())
def test_updates_are_versioned_and_chained(data: st.DataObject) -> None:
    events = data.draw(customer_events())
    state, updates = fold(data.draw(deliveries(events)))
    assert updates, "the first event always makes an update"
    assert [u["version"] for u in updates] == list(range(1, len(updates) + 1))
    assert updates[0]["previous_ppp"] is None
    for before, after in pairwise(updates):
        assert after["previous_ppp"] == before["ppp"]
        assert (after["csat"], after["cltv"], after["ppp"]) != (before["csat"], before["cltv"], before["ppp"])
    last = updates[-1]
    assert (last["csat"], last["cltv"], last["ppp"]) == (
        state.view()["csat"],
        state.view()["cltv"],
        state.view()["ppp"],
    )
    assert len(updates) <= len(events)


@PROFILE
@given(st.data())
def test_state_survives_its_encoding_at_any_point(data: st.DataObject) -> None:
    events = data.draw(customer_events())
    delivered = data.draw(deliveries(events))
    cut = data.draw(st.integers(0, len(delivered)))
    state = CustomerState(events[0].customer_id)
    for event in delivered[:cut]:
        apply_event(state, event, RULES)
    if cut:
        state = decode_state(encode_state(state))
    for event in delivered[cut:]:
        apply_event(state, event, RULES)
    reference, _ = fold(delivered)
    assert state.view() == reference.view()


@st.composite
def referral_world(draw: st.DrawFn) -> list[Event]:
    """Shares of a few customers and ZMOT touchpoints naming them, some by the sharer."""
    from datetime import UTC, datetime, timedelta

    base = datetime(2026, 3, 1, tzinfo=UTC)
    customers = [f"c-{i}" for i in range(4)]
    events: list[Event] = []
    shares = [f"s-{i}" for i in range(draw(st.integers(1, 3)))]
    for index, share_id in enumerate(shares):
        events.append(
            Share(
                event_id=f"sh-{index}",
                customer_id=draw(st.sampled_from(customers)),
                occurred_at=base + timedelta(hours=draw(st.integers(0, 100))),
                share_id=share_id,
                channel="social",
            )
        )
    for index in range(draw(st.integers(0, 10))):
        events.append(
            Touchpoint(
                event_id=f"tp-{index}",
                customer_id=draw(st.sampled_from(customers)),
                occurred_at=base + timedelta(hours=draw(st.integers(0, 100))),
                moment=draw(st.sampled_from(["zmot", "zmot", "fmot"])),
                channel="friend",
                referral_share_id=draw(st.sampled_from(shares)),
            )
        )
    return events


def join_all(events: list[Event], *, reencode: bool = False) -> tuple[set[tuple[str, str, str]], int]:
    joins: dict[str, ShareJoin] = {}
    links: list[tuple[str, str, str]] = []
    selfs = 0
    for event in events:
        sighting = sighting_for(event)
        if sighting is None:
            continue
        join = joins.get(sighting["share_id"]) or ShareJoin(sighting["share_id"])
        result = apply_sighting(join, sighting)
        joins[join.share_id] = decode_join(encode_join(join)) if reencode else join
        links.extend((l["share_id"], l["referrer_id"], l["referred_id"]) for l in result.links)
        selfs += result.self_referrals
    assert len(links) == len(set(links)), "at most one link per (share_id, referred_id)"
    return set(links), selfs


@PROFILE
@given(st.data())
def test_referral_links_do_not_depend_on_order_or_redelivery(data: st.DataObject) -> None:
    events = data.draw(referral_world())
    reference = join_all(events)
    assert join_all(data.draw(deliveries(events)), reencode=data.draw(st.booleans())) == reference
    sharer = {e.share_id: e.customer_id for e in events if isinstance(e, Share)}
    expected = {
        (e.referral_share_id, sharer[e.referral_share_id], e.customer_id)
        for e in events
        if isinstance(e, Touchpoint)
        and e.moment == "zmot"
        and e.referral_share_id
        and sharer[e.referral_share_id] != e.customer_id
    }
    assert reference[0] == expected
    assert reference[1] == sum(
        1
        for e in events
        if isinstance(e, Touchpoint)
        and e.moment == "zmot"
        and e.referral_share_id
        and sharer[e.referral_share_id] == e.customer_id
    )
