"""The changelog encoding of a customer: exact round trips, and the older formats still read."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journey.customer import CustomerState, decode_state, encode_state
from journey.scoring import ScoringRules, apply_event
from tests.unit.strategies import RATES, customer_events, deliveries

RULES = ScoringRules(rates=RATES)
PROFILE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def folded(data: st.DataObject) -> CustomerState:
    events = data.draw(customer_events())
    state = CustomerState(events[0].customer_id)
    for event in data.draw(deliveries(events)):
        apply_event(state, event, RULES)
    return state


def encode_first_format(state: CustomerState) -> bytes:
    """How releases before the flat format wrote a customer (the writer as it was)."""

    def pairs(items: list[tuple[int, Decimal]]) -> list[list[Any]]:
        return [[ts, str(value)] for ts, value in items]

    latest = state.latest_survey
    return orjson.dumps(
        {
            "c": state.customer_id,
            "e": sorted(state.seen),
            "t": [state.first_us, state.last_us],
            "n": [state.surveys, state.purchases, state.refunds, *state.moments],
            "ws": pairs(state.window_surveys),
            "ls": None if latest is None else [latest[0], latest[1], str(latest[2])],
            "se": pairs(state.sentiments),
            "ln": str(state.lifetime_net),
            "rm": pairs(state.recent_money),
            "p": [
                state.version,
                str(state.csat),
                str(state.cltv),
                str(state.cltv_365d),
                str(state.ppp),
                state.cause_event_id,
                state.cause_type,
                None if state.previous_ppp is None else str(state.previous_ppp),
            ],
        }
    )


def encode_third_format(state: CustomerState) -> bytes:
    """How releases before MessagePack wrote a customer: flat JSON arrays (the writer as it was)."""

    def split(items: list[tuple[int, Decimal]]) -> tuple[list[int], list[str]]:
        return [ts for ts, _ in items], [str(value) for _, value in items]

    latest = state.latest_survey
    survey_stamps, survey_values = split(state.window_surveys)
    sentiment_stamps, sentiment_values = split(state.sentiments)
    money_stamps, money_values = split(state.recent_money)
    return orjson.dumps(
        [
            3,
            state.customer_id,
            sorted(state.seen),
            state.first_us,
            state.last_us,
            [state.surveys, state.purchases, state.refunds, *state.moments],
            survey_stamps,
            survey_values,
            str(state.window_survey_sum),
            None if latest is None else [latest[0], latest[1], str(latest[2])],
            sentiment_stamps,
            sentiment_values,
            str(state.sentiment_sum),
            str(state.lifetime_net),
            money_stamps,
            money_values,
            str(state.recent_sum),
            state.version,
            str(state.csat),
            str(state.cltv),
            str(state.cltv_365d),
            str(state.ppp),
            None if state.previous_ppp is None else str(state.previous_ppp),
            state.cause_event_id,
            state.cause_type,
            list(state.campaigns),
            list(state.channels),
            [[share_id, referrer, channel] for share_id, (referrer, channel) in state.referrals.items()],
        ]
    )


@PROFILE
@given(st.data())
def test_every_field_survives_the_encoding(data: st.DataObject) -> None:
    state = folded(data)
    assert decode_state(encode_state(state)) == state


def without_keys(state: CustomerState) -> CustomerState:
    """What formats before the impact keys could hold of a state."""
    return without_second_moment(replace(state, campaigns=set(), channels=set(), referrals={}, joined=set()))


def without_second_moment(state: CustomerState) -> CustomerState:
    """What records before the second moment could hold of a state: no failure known."""
    return replace(state, smot_failures=0, last_failure_us=None, last_good_us=None)


@PROFILE
@given(st.data())
def test_a_changelog_written_in_the_first_format_is_still_read(data: st.DataObject) -> None:
    state = folded(data)
    assert decode_state(encode_first_format(state)) == without_keys(state)


@PROFILE
@given(st.data())
def test_a_changelog_written_in_the_second_format_is_still_read(data: st.DataObject) -> None:
    state = folded(data)
    second = orjson.dumps([2, *orjson.loads(encode_third_format(state))[1:-3]])
    assert decode_state(second) == without_keys(state)


@PROFILE
@given(st.data())
def test_a_changelog_written_in_the_third_format_is_still_read(data: st.DataObject) -> None:
    state = folded(data)
    state.campaigns, state.referrals = {"été/2026"}, {"s-1": ("c-0", "social")}
    assert decode_state(encode_third_format(state)) == without_second_moment(replace(state, joined=set()))


@PROFILE
@given(st.data())
def test_a_record_of_format_4_written_before_joins_were_kept_is_still_read(data: st.DataObject) -> None:
    state = folded(data)
    fields = msgspec.msgpack.decode(encode_state(state))
    older = msgspec.msgpack.encode(fields[:-7])  # without `joined`, the second moment's and identity's
    assert decode_state(older) == without_second_moment(replace(state, joined=set()))


@PROFILE
@given(st.data())
def test_a_record_of_format_4_written_before_the_second_moment_is_still_read(data: st.DataObject) -> None:
    state = folded(data)
    fields = msgspec.msgpack.decode(encode_state(state))
    older = msgspec.msgpack.encode(fields[:-6])  # without smot_failures, the two times and identity's
    assert decode_state(older) == without_second_moment(state)


def test_the_second_moment_survives_the_encoding() -> None:
    state = CustomerState("c-1", moments=[0, 0, 3, 0], smot_failures=2, last_failure_us=5, last_good_us=9)
    decoded = decode_state(encode_state(state))
    assert decoded == state and decoded.recovery() == "recovered"


@PROFILE
@given(st.data())
def test_a_record_of_format_4_written_before_identity_is_still_read(data: st.DataObject) -> None:
    state = folded(data)
    fields = msgspec.msgpack.decode(encode_state(state))
    assert decode_state(msgspec.msgpack.encode(fields[:-3])) == state  # a person of one id


@PROFILE
@given(st.data())
def test_a_record_of_format_4_written_before_join_messages_were_numbered_is_still_read(
    data: st.DataObject,
) -> None:
    state = folded(data)
    fields = msgspec.msgpack.decode(encode_state(state))
    assert decode_state(msgspec.msgpack.encode(fields[:-1])) == state  # no numbered message taken


def test_a_persons_aliases_and_their_events_survive_the_encoding() -> None:
    state = CustomerState("c-1", seen={"e-1"}, aliases={"anon-1"}, alias_seen={"anon-1": {"e-1", "e-2"}})
    assert decode_state(encode_state(state)) == state


def test_referral_keys_survive_the_encoding() -> None:
    state = CustomerState(
        "c-1",
        campaigns={"été/2026"},
        referrals={"s-1": ("c-0", "social")},
        referral_seqs={"s-1": 3, "s-2": 5},
    )
    assert decode_state(encode_state(state)) == state


def test_the_encoding_names_its_format() -> None:
    assert msgspec.msgpack.decode(encode_state(CustomerState("c-1")))[0] == 4


def test_a_format_from_a_newer_release_is_refused_not_misread() -> None:
    fields = msgspec.msgpack.decode(encode_state(CustomerState("c-1")))
    with pytest.raises(ValueError, match="format 5"):
        decode_state(msgspec.msgpack.encode([5, *fields[1:]]))
    with pytest.raises(ValueError, match="cannot read"):
        decode_state(msgspec.msgpack.encode([5, *fields[1:-9]]))  # a shape this release does not know
    newer_json = orjson.dumps([4, *orjson.loads(encode_third_format(CustomerState("c-1")))[1:]])
    with pytest.raises(ValueError, match="format 4"):
        decode_state(newer_json)
