"""Events to the JSON their topics carry, numbers kept exact."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from schemas.events import Incoming

__all__ = ["event_json", "json_number"]


def json_number(value: Decimal) -> int | float:
    # Scores and sentiments have a few digits, which a float's shortest repr keeps exactly;
    # money is sent as a string (SPEC allows it), where nothing is lost at all.
    return int(value) if value == value.to_integral_value() else float(value)


def event_json(event: Incoming) -> bytes:
    """The JSON of an event as a producer sends it, `type` included."""
    data: dict[str, Any] = event.model_dump(exclude_none=True)
    data["occurred_at"] = event.occurred_at.isoformat().replace("+00:00", "Z")
    for name, value in data.items():
        if isinstance(value, Decimal):
            data[name] = str(value) if name == "amount" else json_number(value)
    return orjson.dumps(data)
