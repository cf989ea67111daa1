"""A fast path in front of the pydantic models for the messages that are plainly valid.

msgspec decodes and checks a flat event in a fraction of pydantic's time. It only ever
*accepts*: a message it does not take, for any reason, goes through `schemas.decode`'s
pydantic path, which stays the one definition of an event and the authority for every
rejection, with its words. The numbers are read as the raw JSON text (`msgspec.Raw`) and
checked by the models' own functions, and the timestamp by the models' own parser, so that
both paths give equal events; tests/unit/test_fast_decode.py holds them to it (hypothesis
and the corpus of nasty messages).
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from schemas.events import (
    _SCALE_RANGE,
    Event,
    Purchase,
    Share,
    Survey,
    Touchpoint,
    _parse_rfc3339,
    _require_amount,
    _require_number,
)

__all__ = ["fast_event"]

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_ABSENT = msgspec.Raw(b"")
_NULL = b"null"


class _Common(msgspec.Struct, kw_only=True):
    event_id: _Id
    customer_id: _Id
    occurred_at: str


class _Touchpoint(_Common, tag_field="type", tag="touchpoint", kw_only=True):
    moment: Literal["zmot", "fmot", "smot"]
    channel: str
    action: str | None = None
    campaign: str | None = None
    sentiment: msgspec.Raw = _ABSENT
    referral_share_id: _Id | None = None


class _Purchase(_Common, tag_field="type", tag="purchase", kw_only=True):
    order_id: str
    amount: msgspec.Raw
    currency: str
    kind: Literal["purchase", "refund"] | None = None


class _Survey(_Common, tag_field="type", tag="survey", kw_only=True):
    score: msgspec.Raw
    scale: Literal["1-10", "0-10", "1-5"] | None = None
    survey_id: str | None = None


class _Share(_Common, tag_field="type", tag="share", kw_only=True):
    share_id: _Id
    channel: str
    sentiment: msgspec.Raw = _ABSENT


_DECODERS: dict[str | None, msgspec.json.Decoder[Any]] = {
    "touchpoint": msgspec.json.Decoder(_Touchpoint),
    "purchase": msgspec.json.Decoder(_Purchase),
    "survey": msgspec.json.Decoder(_Survey),
    "share": msgspec.json.Decoder(_Share),
    # In a file `type` is required: a tagged union wants its tag.
    None: msgspec.json.Decoder(_Touchpoint | _Purchase | _Survey | _Share),
}


_STRING = msgspec.json.Decoder(str)


class _NotFast(Exception):
    """Left to the pydantic path."""


def _number_text(raw: msgspec.Raw) -> str | None:
    """A JSON number's own text, None for null or absent; anything else is not fast."""
    data = bytes(raw)
    if not data or data == _NULL:
        return None
    if data[0] == 0x22:  # 0x22: a string
        raise _NotFast
    return data.decode("ascii")


def _exact(raw: msgspec.Raw) -> Decimal | None:
    text = _number_text(raw)
    return None if text is None else Decimal(text)


_ONE, _MINUS_ONE = Decimal(1), Decimal(-1)


def _sentiment(raw: msgspec.Raw) -> Decimal | None:
    """`_require_sentiment` for a number read from its JSON text (finite by construction)."""
    number = _exact(raw)
    if number is not None and not _MINUS_ONE <= number <= _ONE:
        raise _NotFast
    return number


# Each model's defaults, for the fields a message left out.
_DEFAULTS = {
    model: {name: field.default for name, field in model.model_fields.items() if not field.is_required()}
    for model in (Touchpoint, Purchase, Survey, Share)
}
_DEFAULT_SCALE = _DEFAULTS[Survey]["scale"]
_DEFAULT_KIND = _DEFAULTS[Purchase]["kind"]
# The fields a message always gives (the required ones; `type` is not required of a topic's).
_GIVEN = {
    model: frozenset(name for name, field in model.model_fields.items() if field.is_required())
    for model in (Touchpoint, Purchase, Survey, Share)
}
_new = object.__new__
_set = object.__setattr__


def _instance(model: Any, values: dict[str, Any], given: set[str]) -> Any:
    """The instance validation would have built, without validating again. What pydantic's
    `model_construct` does, at a fraction of its cost (it was slower than validating): every
    field's value in `values`, the fields the message gave, and no extra or private
    attributes (the models have none). The builders write each field out: a dict of the
    given fields merged into a copy of the defaults cost a quarter of a touchpoint's time."""
    instance = _new(model)
    _set(instance, "__pydantic_fields_set__", given)
    _set(instance, "__dict__", values)
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance


def _optional(given: set[str], **values: Any) -> set[str]:
    """`given` with the names of `values` that are not None."""
    given.update(name for name, value in values.items() if value is not None)
    return given


def _touchpoint(event: _Touchpoint, currencies: Collection[str] | None) -> Touchpoint:
    sentiment = _sentiment(event.sentiment)
    action, campaign, referral = event.action, event.campaign, event.referral_share_id
    values = {
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "occurred_at": _parse_rfc3339(event.occurred_at),
        "type": "touchpoint",
        "moment": event.moment,
        "channel": event.channel,
        "action": action,
        "campaign": campaign,
        "sentiment": sentiment,
        "referral_share_id": referral,
    }
    given = set(_GIVEN[Touchpoint])
    if action is not None:
        given.add("action")
    if campaign is not None:
        given.add("campaign")
    if sentiment is not None:
        given.add("sentiment")
    if referral is not None:
        given.add("referral_share_id")
    return _instance(Touchpoint, values, given)


def _amount(raw: msgspec.Raw) -> Decimal | None:
    """An amount as the model reads it: a number's own text, or a string (SPEC allows it)."""
    data = bytes(raw)
    if data[:1] == b'"':
        return _require_amount(_STRING.decode(data))
    number = _exact(raw)
    return None if number is None else _require_amount(number)


def _purchase(event: _Purchase, currencies: Collection[str] | None) -> Purchase:
    amount = _amount(event.amount)
    currency = event.currency
    # The model's pattern, ^[A-Z]{3}$, spelled out: Python's `$` would also take "USD\n".
    plain = len(currency) == 3 and currency.isascii() and currency.isalpha() and currency.isupper()
    if amount is None or not plain or (currencies is not None and currency not in currencies):
        raise _NotFast
    values = {
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "occurred_at": _parse_rfc3339(event.occurred_at),
        "type": "purchase",
        "order_id": event.order_id,
        "amount": amount,
        "currency": currency,
        "kind": _DEFAULT_KIND if event.kind is None else event.kind,
    }
    return _instance(Purchase, values, _optional(set(_GIVEN[Purchase]), kind=event.kind))


def _survey(event: _Survey, currencies: Collection[str] | None) -> Survey:
    score = _exact(event.score)
    if score is None:
        raise _NotFast
    number = _require_number(score)
    scale = _DEFAULT_SCALE if event.scale is None else event.scale
    low, high = _SCALE_RANGE[scale]
    if not low <= number <= high:
        raise _NotFast
    values = {
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "occurred_at": _parse_rfc3339(event.occurred_at),
        "type": "survey",
        "score": number,
        "scale": scale,
        "survey_id": event.survey_id,
    }
    given = _optional(set(_GIVEN[Survey]), scale=event.scale, survey_id=event.survey_id)
    return _instance(Survey, values, given)


def _share(event: _Share, currencies: Collection[str] | None) -> Share:
    sentiment = _sentiment(event.sentiment)
    values = {
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "occurred_at": _parse_rfc3339(event.occurred_at),
        "type": "share",
        "share_id": event.share_id,
        "channel": event.channel,
        "sentiment": sentiment,
    }
    return _instance(Share, values, _optional(set(_GIVEN[Share]), sentiment=sentiment))


_BUILDERS: dict[type[Any], Any] = {
    _Touchpoint: _touchpoint,
    _Purchase: _purchase,
    _Survey: _survey,
    _Share: _share,
}


def fast_event(raw: bytes, *, expected_type: str | None, currencies: Collection[str] | None) -> Event | None:
    """The event in `raw` when it is plainly valid, else None (then ask the pydantic path)."""
    # Nesting (which the exact path limits) and arrays are never plain: a flat event has
    # one `{` and no `[` (one in a string only sends the message the slow way).
    decoder = _DECODERS.get(expected_type)
    if decoder is None or raw.count(b"{") != 1 or b"[" in raw:
        return None  # identify events are rare: the pydantic path is fast enough
    try:
        event = decoder.decode(raw)
        return _BUILDERS[type(event)](event, currencies)
    except (msgspec.DecodeError, msgspec.ValidationError, _NotFast, ValueError, ArithmeticError):
        return None
