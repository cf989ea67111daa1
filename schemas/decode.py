"""From message bytes or parsed JSON to a validated event, or a reason why not.

One place decides what is valid, so that the worker, `journey publish` and `journey replay`
reject exactly the same messages with the same words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from decimal import Decimal
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.events import EVENT_MODELS, ErasureRequest, Event, Identify, Incoming
from schemas.fast import fast_event

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "InvalidEvent",
    "parse_erasure",
    "parse_event",
    "parse_json",
    "scored",
    "validate_event",
]

# Events are a few hundred bytes; a megabyte is a broken or hostile producer.
DEFAULT_MAX_EVENT_BYTES = 1_048_576
# Events are flat objects; anything deeper is not an event and must not cost a deep walk.
_MAX_DEPTH = 32


class InvalidEvent(ValueError):
    """A message that breaks a rule of SPEC.md; `str()` names the field and the rule."""


def _reject_constant(name: str) -> Any:
    raise InvalidEvent(f"{name} is not a JSON number")


# One decoder for every message: json.loads would build a new one per call.
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)

# A float's shortest repr is, by value, the decimal it was read from whenever that decimal had
# at most 15 significant digits; the models read floats through that repr.
_SHORT_NUMBER_AFTER_KEY = re.compile(rb"\s*:\s*-?[0-9.]{1,14}[\s,}]")


def _read_exactly(raw: bytes, key: str) -> bool:
    """Whether the number orjson read for a top-level `key` was written in 15 characters or
    fewer, without an exponent: found by the key's last literal occurrence (the one a parser
    keeps), which must start a token and be followed by such a number; anything else is
    left to the exact parser."""
    token = b'"' + key.encode("utf-8", "surrogatepass") + b'"'
    at = raw.rfind(token)
    if at <= 0 or raw[at - 1] == 0x5C:  # 0x5C: a backslash, so an escaped quote in a string
        return False
    return _SHORT_NUMBER_AFTER_KEY.match(raw, at + len(token)) is not None


def _parse_fast(raw: bytes) -> dict[str, Any] | None:
    """orjson's reading of a flat object when it equals the exact parser's, else None.

    orjson is three times faster than `json` but reads fractions as floats; events are flat
    and their fractions short, so for them the two agree. Text with a second `{` goes to
    the exact parser: a nested object can hold a top-level key's name and send
    `_read_exactly` to the wrong number (hypothesis found one)."""
    if raw.count(b"{") > 1:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # the exact parser says what is wrong, in the words it always has
    if type(data) is not dict:
        return None
    for key, value in data.items():
        kind = type(value)
        if (kind is float and not _read_exactly(raw, key)) or kind is dict or kind is list:
            return None
    return data


def _nesting_depth_exceeds(text: str, limit: int) -> bool:
    # A cheap scan before parsing: brackets inside strings can only overcount, and an
    # overcount only matters for objects that are already absurdly nested.
    if text.count("{") + text.count("[") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
            if depth > limit:
                return True
        elif char in "}]":
            depth -= 1
    return False


def parse_json(raw: bytes | str, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Any:
    """Parse one JSON value, numbers with a fraction as `Decimal`, within size and depth limits."""
    if len(raw) > max_bytes:
        raise InvalidEvent(f"message is {len(raw)} bytes, more than the limit of {max_bytes}")
    if isinstance(raw, bytes):
        # A flat object is never too deep, and orjson refuses what is not UTF-8.
        if (data := _parse_fast(raw)) is not None:
            return data
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        text = raw
    if _nesting_depth_exceeds(text, _MAX_DEPTH):
        raise InvalidEvent(f"JSON nested deeper than {_MAX_DEPTH} levels")
    try:
        return _DECODER.decode(text)
    except InvalidEvent:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent(f"not JSON ({exc})") from None


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        # Model-level rules name their field in the message themselves.
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def validate_event(
    data: Any, *, expected_type: str | None, currencies: Collection[str] | None = None
) -> Incoming:
    """Validate a parsed JSON value as an event.

    `expected_type` is the type the topic carries (then `type` is optional and must match);
    `None` means the value came from a file, where `type` is required.
    """
    if not isinstance(data, dict):
        raise InvalidEvent(f"event: must be a JSON object, not {type(data).__name__}")
    given = data.get("type")
    if expected_type is None:
        if given is None:
            raise InvalidEvent("type: field required in files")
        if not isinstance(given, str) or given not in EVENT_MODELS:
            raise InvalidEvent(f"type: {given!r} is not one of {', '.join(EVENT_MODELS)}")
        expected_type = given
    elif given is not None and given != expected_type:
        raise InvalidEvent(f"type: {given!r} does not match the topic, which carries {expected_type}")
    model = EVENT_MODELS[expected_type]
    if None in data.values():
        # An optional field sent as null means "not given", as producers in most languages
        # serialise absent optionals.
        data = {k: v for k, v in data.items() if v is not None}
    try:
        # The validator itself: BaseModel.model_validate only wraps it.
        return model.__pydantic_validator__.validate_python(data, context={"currencies": currencies})
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc)) from None


def scored(event: Incoming) -> Event:
    """`event` as one that folds into a customer's state, for a reader that takes no
    identify events (they join states instead: SPEC.md, "Identity")."""
    if isinstance(event, Identify):
        raise InvalidEvent("type: identify events are not taken here")
    return event


def parse_erasure(raw: bytes | str, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> ErasureRequest:
    """Bytes of one erasure request (topic `erasures`, or a line of `--erasures FILE`)."""
    data = parse_json(raw, max_bytes=max_bytes)
    if not isinstance(data, dict):
        raise InvalidEvent(f"erasure request: must be a JSON object, not {type(data).__name__}")
    try:
        return ErasureRequest.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc)) from None


def parse_event(
    raw: bytes | str,
    *,
    expected_type: str | None,
    currencies: Collection[str] | None = None,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> Incoming:
    """Bytes of one message (or one line of a file) to a validated event."""
    if type(raw) is bytes and len(raw) <= max_bytes:
        event = fast_event(raw, expected_type=expected_type, currencies=currencies)
        if event is not None:
            return event
    return validate_event(
        parse_json(raw, max_bytes=max_bytes), expected_type=expected_type, currencies=currencies
    )
