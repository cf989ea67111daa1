"""The fast JSON path reads every message exactly as the exact (Decimal) parser does."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decode import _DECODER, _parse_fast, parse_json

_KEYS = st.sampled_from(["sentiment", "score", "amount", "customer_id", "x", 'q"k', "é", "sentiment "])
_NUMBER_TEXT = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10, max_value=10).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: format(d, "f")),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["1e5", "1E-7", "-0.0", "0.1000000000000000055511151231257827", "12345678901.2345"]),
)
_VALUE_TEXT = st.one_of(
    _NUMBER_TEXT,
    st.text(max_size=8).map(json.dumps),
    st.sampled_from(["true", "null", '{"sentiment": 0.5}', "[1.5]", '"\\"sentiment\\": 0.5"']),
)


def same_reading(fast: Any, exact: Any) -> bool:
    """Equal values; a float read fast stands for the Decimal of its repr."""
    if isinstance(fast, float):
        return isinstance(exact, Decimal) and Decimal(repr(fast)) == exact
    if isinstance(fast, dict):
        return (
            isinstance(exact, dict)
            and list(fast) == list(exact)
            and all(same_reading(fast[k], exact[k]) for k in fast)
        )
    return type(fast) is type(exact) and fast == exact


@settings(max_examples=1500)
@given(st.lists(st.tuples(_KEYS, _VALUE_TEXT), max_size=6), st.sampled_from(["", " ", "\n  "]))
def test_the_fast_path_reads_what_the_exact_parser_reads(pairs: list[tuple[str, str]], space: str) -> None:
    text = "{" + ",".join(f"{space}{json.dumps(k)}{space}:{space}{v}" for k, v in pairs) + space + "}"
    raw = text.encode()
    fast = _parse_fast(raw)
    if fast is not None:
        assert same_reading(fast, _DECODER.decode(text)), text


def test_long_fractions_exponents_and_nesting_take_the_exact_path() -> None:
    for text in [
        b'{"sentiment": 0.1000000000000000055511151231257827}',
        b'{"sentiment": 5e-1}',
        b'{"score": 123456789012345678901234567890}',
        b'{"a": {"b": 1}}',
        b'{"sentiment": 0.25, "note": "x", "sentiment": 0.12345678901234567}',
    ]:
        assert _parse_fast(text) is None, text
    assert parse_json(b'{"sentiment": 0.1000000000000000055511151231257827}') == {
        "sentiment": Decimal("0.1000000000000000055511151231257827")
    }


def test_usual_events_take_the_fast_path() -> None:
    raw = b'{"type": "touchpoint", "customer_id": "c-1", "sentiment": -0.233, "score": 7}'
    assert _parse_fast(raw) == {"type": "touchpoint", "customer_id": "c-1", "sentiment": -0.233, "score": 7}
