"""The msgspec fast path against the pydantic path: it never accepts a message the pydantic
path rejects, and the events it gives are equal to the pydantic path's."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.decode import InvalidEvent, parse_json, validate_event
from schemas.fast import fast_event
from stream.kafka.topics import INPUT_TOPICS
from tests.unit.strategies import RATES, customer_events

_KINDS = ["touchpoint", "purchase", "survey", "share"]
_FIELDS = [
    "type", "event_id", "customer_id", "occurred_at", "moment", "channel", "action", "campaign",
    "sentiment", "referral_share_id", "order_id", "amount", "currency", "kind", "score", "scale",
    "survey_id", "share_id", "extra",
]  # fmt: skip
_TEXT_VALUES = (
    ["", "a", "x" * 128, "x" * 129, "é" * 128, "é" * 129, "USD", "EUR", "usd", "USD\n", "XXX", " USD",
     "zmot", "fmot", "smot", "umot", "ZMOT", "purchase", "refund", "1-10", "0-10", "1-5", "1-7",
     "touchpoint", "survey", "share", "0.5", "12", "{", "[", "\\", "\u2028", "a\x00b",
     "2026-03-01T10:00:00Z", "2026-03-01T10:00:00.123456789+02:00", "2026-03-01 10:00:00z",
     "2026-03-01T10:00:00", "2026-02-30T10:00:00Z", "20260301T100000Z", "2026-03-01"]
)  # fmt: skip
_NUMBER_VALUES = (
    ["0", "-0", "1", "10", "11", "-1", "0.5", "-1.0", "1.00001", "7.25", "1e0", "1E1", "5e-1",
     "12.3456", "12.34567", "999999999999.9999", "1000000000000", "1e400", "-1e-400",
     "0.10000", "2.250", "100000.0001", "9" * 70, "00.5", ".5", "+1", "NaN", "Infinity", "0x10"]
)  # fmt: skip
_TEXTS = st.sampled_from(_TEXT_VALUES)
_NUMBER_TEXTS = st.sampled_from(_NUMBER_VALUES)
_VALUES = st.one_of(
    _TEXTS.map(json.dumps),
    _NUMBER_TEXTS,
    st.sampled_from(["null", "true", "false", "[]", "{}", '{"a": 1}', "[1, 2]"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
    st.text(max_size=5).map(json.dumps),
)


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """A JSON-ish object: some event's fields, often valid, with nasty values and text, and
    the type its topic carries (None: a file's line)."""
    kind = draw(st.sampled_from(_KINDS))
    expected_type = draw(st.sampled_from([None, kind, kind, *_KINDS]))
    base = _valid(kind)
    # Mostly the event's own fields, where a wrong value matters; now and then any other.
    names = st.sampled_from(list(base)) | st.sampled_from(_FIELDS)
    for name in draw(st.lists(names, max_size=3)):
        base[name] = None if draw(st.booleans()) and name in base else "?"
    parts = []
    for name, value in base.items():
        if value is None:
            continue
        if value != "?":
            text = json.dumps(value)
        elif isinstance(_valid(kind).get(name), str):  # a wrong text is likelier to matter
            text = draw(_TEXTS.map(json.dumps) | _VALUES)
        else:
            text = draw(_NUMBER_TEXTS | _VALUES)
        parts.append(f"{json.dumps(name)}{draw(st.sampled_from([':', ' : ']))}{text}")
    if draw(st.booleans()) and parts:
        parts.append(parts[draw(st.integers(0, len(parts) - 1))])  # a repeated key
    body = "{" + ", ".join(draw(st.permutations(parts))) + "}"
    return body.encode("utf-8", "surrogatepass"), expected_type


def _valid(kind: str) -> dict[str, Any]:
    common = {"type": kind, "event_id": "e-1", "customer_id": "c-1", "occurred_at": "2026-03-01T10:00:00.5Z"}
    return {
        "touchpoint": {**common, "moment": "zmot", "channel": "web", "sentiment": 0.25, "campaign": "spring"},
        "purchase": {**common, "order_id": "o-1", "amount": 12.5, "currency": "EUR"},
        "survey": {**common, "score": 4, "scale": "1-5"},
        "share": {**common, "share_id": "s-1", "channel": "social", "sentiment": -0.5},
    }[kind]


def _agree(raw: bytes, expected_type: str | None, currencies: Any = RATES) -> bool:
    """The fast path takes `raw` only as the pydantic path does; True when it took it."""
    fast = fast_event(raw, expected_type=expected_type, currencies=currencies)
    if fast is None:
        return False
    try:
        slow = validate_event(parse_json(raw), expected_type=expected_type, currencies=currencies)
    except InvalidEvent as exc:
        raise AssertionError(f"the fast path accepted {raw!r}, which is rejected: {exc}") from None
    assert type(fast) is type(slow) and fast == slow, (raw, fast, slow)
    assert fast.model_dump() == slow.model_dump(), raw
    return True


@given(messages(), st.sampled_from([None, *_KINDS]))
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_fast_path_accepts_only_what_pydantic_accepts_and_agrees(
    raw: bytes, expected_type: str | None
) -> None:
    _agree(raw, expected_type)


def test_every_field_with_every_nasty_value() -> None:
    """Each field of each type, alone, set to each nasty value, left out and sent as null:
    exhaustive where hypothesis samples (it finds the combinations)."""
    values = [json.dumps(t) for t in _TEXT_VALUES] + _NUMBER_VALUES
    values += ["null", "true", "[]", "{}", '"0.5"', '"12"']
    checked = taken = 0
    for kind in _KINDS:
        base = _valid(kind)
        for name in [*base, "kind", "scale", "extra"]:
            variants = [{k: json.dumps(v) for k, v in base.items() if k != name}]
            variants += [{**{k: json.dumps(v) for k, v in base.items()}, name: value} for value in values]
            for fields in variants:
                raw = ("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode()
                for expected_type in (None, kind):
                    for currencies in (RATES, None):
                        taken += _agree(raw, expected_type, currencies)
                        checked += 1
    assert checked > 5000 and taken > 500, (checked, taken)


@given(customer_events(max_size=8))
@settings(max_examples=200, deadline=None)
def test_valid_events_take_the_fast_path(events: list[Any]) -> None:
    for event in events:
        raw = _as_producers_write(event)
        assert _agree(raw, None), raw  # every plain event: otherwise the fast path does nothing


def _as_producers_write(event: Any) -> bytes:
    """JSON with numbers as numbers (pydantic would write decimals as strings)."""
    parts = []
    for name, value in event.model_dump(exclude_none=True).items():
        if isinstance(value, Decimal):
            text = str(value)
        elif isinstance(value, datetime):
            text = json.dumps(value.isoformat().replace("+00:00", "Z"))
        else:
            text = json.dumps(value)
        parts.append(f"{json.dumps(name)}: {text}")
    return ("{" + ", ".join(parts) + "}").encode()


def test_the_corpus_of_conformance_and_nasty_messages(conformance: Any) -> None:
    taken = 0
    for line in conformance.raw_lines:
        taken += _agree(line, None)
    # Most real events are flat and plain: the fast path must be the usual one.
    assert taken >= 0.8 * len(conformance.raw_lines), taken
    for topic, raw in conformance.bad_messages:
        assert fast_event(raw, expected_type=INPUT_TOPICS[topic], currencies=conformance.rates) is None, raw
    for raw in [
        b"not json",
        b"\xff\xfe\x00binary",
        b'{"score": NaN}',
        b"[1, 2]",
        b'{"type": "survey", "event_id": "e", "customer_id": "c", "occurred_at": "2026-03-01T10:00:00Z", "score": '
        + b"9" * 5000
        + b"}",
        b'{"type": "survey", "event_id": "\\ud800", "customer_id": "c", "occurred_at": "2026-03-01T10:00:00Z", '
        b'"score": 5}',
    ]:
        for expected_type in (None, "survey"):
            _agree(raw, expected_type)
