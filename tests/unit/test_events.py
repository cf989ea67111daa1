"""Every rule of SPEC.md "Input events": what is accepted, what is rejected and why."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from schemas.decode import InvalidEvent, parse_event, parse_json, validate_event
from schemas.events import Purchase, Survey, Touchpoint

CURRENCIES = {"USD", "EUR"}
BASE = {"event_id": "e-1", "customer_id": "c-1", "occurred_at": "2026-01-01T10:00:00Z"}
TOUCH = {**BASE, "moment": "zmot", "channel": "search"}
BUY = {**BASE, "order_id": "o-1", "amount": "10.5", "currency": "USD"}
SURVEY = {**BASE, "score": 7}
SHARE = {**BASE, "share_id": "s-1", "channel": "social"}


def check(data: dict[str, Any], kind: str) -> Any:
    return parse_event(json.dumps(data).encode(), expected_type=kind, currencies=CURRENCIES)


def test_valid_events_of_each_type() -> None:
    touch = check(
        {**TOUCH, "sentiment": -0.25, "referral_share_id": "s-9", "campaign": "x", "action": "read"},
        "touchpoint",
    )
    assert isinstance(touch, Touchpoint) and touch.sentiment == Decimal("-0.25")
    buy = check({**BUY, "kind": "refund"}, "purchase")
    assert isinstance(buy, Purchase) and buy.amount == Decimal("10.5") and buy.kind == "refund"
    survey = check(SURVEY, "survey")
    assert isinstance(survey, Survey) and survey.scale == "1-10"
    assert check(SHARE, "share").share_id == "s-1"


def test_numbers_keep_their_json_text_exactly() -> None:
    buy = parse_event(
        b'{"event_id":"e","customer_id":"c","occurred_at":"2026-01-01T00:00:00Z",'
        b'"order_id":"o","amount":64004.49,"currency":"USD"}',
        expected_type="purchase",
    )
    assert buy.amount == Decimal("64004.49")


def test_timestamps_are_converted_to_utc_and_keep_microseconds() -> None:
    event = check({**TOUCH, "occurred_at": "2026-10-02T07:36:10.507797+09:00"}, "touchpoint")
    assert event.occurred_at == datetime(2026, 10, 1, 22, 36, 10, 507797, tzinfo=UTC)
    nanos = check({**TOUCH, "occurred_at": "2026-01-01T00:00:00.123456789Z"}, "touchpoint")
    assert nanos.occurred_at.microsecond == 123456


def test_unknown_fields_and_null_optionals_are_accepted() -> None:
    event = check({**TOUCH, "browser": "x", "nested": {"a": [1]}, "sentiment": None}, "touchpoint")
    assert event.sentiment is None
    assert "browser" not in event.model_dump()


def test_type_may_be_omitted_on_a_topic_but_is_required_in_files() -> None:
    assert check({**SURVEY, "type": "survey"}, "survey")
    with pytest.raises(InvalidEvent, match="type: field required"):
        validate_event(SURVEY, expected_type=None)
    with pytest.raises(InvalidEvent, match="type: 'quiz' is not one of"):
        validate_event({**SURVEY, "type": "quiz"}, expected_type=None)
    # A list or an object (unhashable) in a file: a reason, not a TypeError (found by
    # test_replay's hypothesis test; `journey replay` printed a traceback).
    for odd in ([], {"a": 1}):
        with pytest.raises(InvalidEvent, match=r"type: .* is not one of"):
            validate_event({**SURVEY, "type": odd}, expected_type=None)


@pytest.mark.parametrize(
    ("kind", "data", "reason"),
    [
        ("touchpoint", {**TOUCH, "event_id": ""}, "event_id"),
        ("touchpoint", {**TOUCH, "event_id": "x" * 129}, "event_id"),
        ("touchpoint", {**TOUCH, "customer_id": 42}, "customer_id"),
        ("touchpoint", {k: v for k, v in TOUCH.items() if k != "customer_id"}, "customer_id"),
        ("touchpoint", {**TOUCH, "occurred_at": "2026-01-01T00:00:00"}, "occurred_at"),
        ("touchpoint", {**TOUCH, "occurred_at": "2026-01-01"}, "occurred_at"),
        ("touchpoint", {**TOUCH, "occurred_at": 1767225600}, "occurred_at"),
        ("touchpoint", {**TOUCH, "occurred_at": "2026-02-30T00:00:00Z"}, "occurred_at"),
        ("touchpoint", {**TOUCH, "moment": "umot"}, "moment"),
        ("touchpoint", {**TOUCH, "sentiment": 1.5}, "sentiment"),
        ("touchpoint", {**TOUCH, "sentiment": "0.5"}, "sentiment"),
        ("touchpoint", {**TOUCH, "sentiment": True}, "sentiment"),
        ("touchpoint", {**TOUCH, "channel": None}, "channel"),
        ("touchpoint", {**TOUCH, "type": "share"}, "type"),
        ("purchase", {**BUY, "amount": "-5"}, "amount"),
        ("purchase", {**BUY, "amount": 0}, "amount"),
        ("purchase", {**BUY, "amount": "5.12345"}, "amount"),
        ("purchase", {**BUY, "amount": "abc"}, "amount"),
        ("purchase", {**BUY, "amount": "1e308"}, "amount"),
        ("purchase", {**BUY, "amount": [5]}, "amount"),
        ("purchase", {**BUY, "currency": "XXX"}, "currency"),
        ("purchase", {**BUY, "currency": "usd"}, "currency"),
        ("purchase", {**BUY, "kind": "chargeback"}, "kind"),
        ("survey", {**SURVEY, "score": 11}, "score"),
        ("survey", {**SURVEY, "score": 0}, "score"),
        ("survey", {**SURVEY, "score": 6, "scale": "1-5"}, "score"),
        ("survey", {**SURVEY, "score": 4, "scale": "1-3"}, "scale"),
        ("survey", {**SURVEY, "score": "7"}, "score"),
        ("share", {k: v for k, v in SHARE.items() if k != "share_id"}, "share_id"),
    ],
)
def test_rejected_with_the_field_named(kind: str, data: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidEvent) as error:
        check(data, kind)
    assert str(error.value).startswith(reason), str(error.value)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe\x00binary", "not UTF-8"),
        (b'{"score": NaN}', "NaN is not a JSON number"),
        (b'{"score": Infinity}', "Infinity is not a JSON number"),
        (b"[1, 2]", "must be a JSON object"),
        (b"[" * 10_000 + b"]" * 10_000, "nested deeper"),
        (b'{"a": "' + b"x" * 2_000_000 + b'"}', "more than the limit"),
        (b'{"score": ' + b"9" * 5000 + b"}", "not JSON"),
    ],
)
def test_malformed_messages_are_rejected_without_crashing(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(raw, expected_type="survey")


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    data = parse_json(json.dumps({"note": "[" * 100, **SURVEY}).encode())
    assert data["note"] == "[" * 100


def test_conformance_bad_messages_are_all_rejected(conformance: Any) -> None:
    from stream.kafka.topics import INPUT_TOPICS

    for topic, raw in conformance.bad_messages:
        with pytest.raises(InvalidEvent) as error:
            parse_event(raw, expected_type=INPUT_TOPICS[topic], currencies=conformance.rates)
        assert str(error.value)
