"""Input event models: the four event types producers publish (SPEC.md, "Input events").

Numbers arrive as `int` or `Decimal` (the JSON text is parsed with `parse_float=Decimal`),
so that money and scores are exact from the wire on. Strings are never coerced into numbers
except for `amount`, which SPEC allows as a string.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

__all__ = [
    "EVENT_MODELS",
    "MAX_AMOUNT",
    "ErasureRequest",
    "Event",
    "EventType",
    "Identify",
    "Incoming",
    "Moment",
    "Purchase",
    "Scale",
    "Share",
    "Survey",
    "Touchpoint",
]

EventType = Literal["touchpoint", "purchase", "survey", "share", "identify"]
Moment = Literal["zmot", "fmot", "smot"]
Scale = Literal["1-10", "0-10", "1-5"]

# A single order above a trillion units is a producer bug, not a sale; the bound also keeps
# every sum exact within the core's decimal precision (SPEC is silent; see docs/choices.md).
MAX_AMOUNT = Decimal("1000000000000")
_FOUR_PLACES = Decimal("0.0001")

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?P<frac>\.\d+)?(?P<tz>[Zz]|[+-]\d{2}:\d{2})")


# The same rule in the regex dialect of JSON Schema (no named groups), anchored.
_RFC3339_ECMA = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"


def _parse_rfc3339(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp needs an offset or Z")
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 string")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError("must be an RFC 3339 timestamp with an offset or Z")
    text = value
    if value[-1] == "Z" and value[10] == "T" and len(value) <= 27:
        pass  # the usual shape, which fromisoformat reads as it is, already in UTC
    elif len(frac := match.group("frac") or "") > 7 or value[10] != "T" or value[-1] == "z":
        # fromisoformat takes at most six fractional digits (finer ones are truncated), and
        # RFC 3339 also allows a space or lower-case letters.
        text = (
            value[:10]
            + "T"
            + value[11 : match.start("tz") - len(frac)]
            + frac[:7]
            + match.group("tz").upper()
        )
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise ValueError(f"not a valid timestamp ({exc})") from None


def _require_number(value: Any) -> Decimal:
    # bool is an int subclass in Python, but `true` is not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise ValueError("must be a JSON number")
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        raise ValueError("must be a finite number")
    return number


def _require_amount(value: Any) -> Decimal:
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("must be a decimal number") from None
    else:
        number = _require_number(value)
    if not number.is_finite():
        raise ValueError("must be a finite number")
    if number <= 0:
        raise ValueError("must be positive")
    if number >= MAX_AMOUNT:
        raise ValueError(f"must be below {MAX_AMOUNT}")
    if number != number.quantize(_FOUR_PLACES):
        raise ValueError("has more than 4 decimals")
    return number


_ONE, _MINUS_ONE = Decimal(1), Decimal(-1)


def _require_sentiment(value: Any) -> Decimal:
    # One validator, not a number check and a range check: each costs a call out of Rust.
    # Decimal against Decimal compares in half the time of Decimal against int.
    number = _require_number(value)
    if not _MINUS_ONE <= number <= _ONE:
        raise ValueError("must be in [-1, 1]")
    return number


_NUMBER_SCHEMA = {"type": "number"}
Number = Annotated[Decimal, BeforeValidator(_require_number), WithJsonSchema(_NUMBER_SCHEMA)]
Sentiment = Annotated[
    Decimal,
    BeforeValidator(_require_sentiment),
    WithJsonSchema({"type": "number", "minimum": -1, "maximum": 1}),
]
Amount = Annotated[
    Decimal,
    BeforeValidator(_require_amount),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1e12},
                {
                    "type": "string",
                    "pattern": r"^\s*\+?0*[0-9]{1,12}(\.[0-9]{0,4}0*)?\s*$|^\s*\+?\.[0-9]{1,4}0*\s*$",
                },
            ],
            "description": "positive decimal, at most 4 decimals, below 10^12",
        }
    ),
]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_parse_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _RFC3339_ECMA}),
]
Id = Annotated[str, Field(min_length=1, max_length=128, strict=True)]
Text = Annotated[str, Field(strict=True)]

_SCALE_RANGE: dict[str, tuple[int, int]] = {"1-10": (1, 10), "0-10": (0, 10), "1-5": (1, 5)}


class _Event(BaseModel):
    """Fields every event has."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Id
    customer_id: Id
    occurred_at: Timestamp


class Touchpoint(_Event):
    """A ZMOT, FMOT or SMOT moment: research, first impression or use."""

    type: Literal["touchpoint"] = "touchpoint"
    moment: Moment
    channel: Text
    action: Text | None = None
    campaign: Text | None = None
    sentiment: Sentiment | None = None
    referral_share_id: Id | None = None


class Purchase(_Event):
    """A purchase or a refund, in any currency with a known rate."""

    type: Literal["purchase"] = "purchase"
    order_id: Text
    amount: Amount
    currency: Annotated[str, Field(strict=True, pattern=r"^[A-Z]{3}$")]
    kind: Literal["purchase", "refund"] = "purchase"

    @field_validator("currency")
    @classmethod
    def _known_rate(cls, value: str, info: ValidationInfo) -> str:
        currencies = (info.context or {}).get("currencies")
        if currencies is not None and value not in currencies:
            raise ValueError(f"no known exchange rate for {value}")
        return value


class Survey(_Event):
    """A survey answer on one of three scales."""

    type: Literal["survey"] = "survey"
    score: Annotated[Number, WithJsonSchema({"type": "number", "minimum": 0, "maximum": 10})]
    scale: Scale = "1-10"
    survey_id: Text | None = None

    @model_validator(mode="after")
    def _score_in_scale(self) -> Survey:
        low, high = _SCALE_RANGE[self.scale]
        if not low <= self.score <= high:
            raise ValueError(f"score: {self.score} is outside scale {self.scale}")
        return self


class Share(_Event):
    """A UMOT share: word of mouth that may become someone else's ZMOT."""

    type: Literal["share"] = "share"
    share_id: Id
    channel: Text
    sentiment: Sentiment | None = None


class Identify(_Event):
    """Two ids of one person (SPEC.md, "Identity"): `customer_id` the one it is known by,
    `anonymous_id` one it used before or elsewhere. It counts for no score and no time."""

    type: Literal["identify"] = "identify"
    anonymous_id: Id

    @model_validator(mode="after")
    def _two_ids(self) -> Identify:
        if self.anonymous_id == self.customer_id:
            raise ValueError("anonymous_id: must not equal customer_id")
        return self


# The events that fold into a customer's state; identify events join states instead.
Event = Touchpoint | Purchase | Survey | Share
Incoming = Event | Identify


class ErasureRequest(BaseModel):
    """A request to forget a customer's events up to a time (SPEC.md, "Erasure"), topic
    `erasures`: every event of `customer_id` whose `occurred_at` is at or before
    `requested_at`, including such events that arrive later. A repeated `request_id` is a
    duplicate."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: Id
    customer_id: Id
    requested_at: Timestamp


EVENT_MODELS: dict[str, type[Touchpoint] | type[Purchase] | type[Survey] | type[Share] | type[Identify]] = {
    "touchpoint": Touchpoint,
    "purchase": Purchase,
    "survey": Survey,
    "share": Share,
    "identify": Identify,
}
