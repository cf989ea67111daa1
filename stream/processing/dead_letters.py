"""The `dead-letters` message of SPEC.md for an input message no handler can take."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson

from journey.customer import format_us, to_us
from stream.processing.batch import Batch

__all__ = ["DEAD_LETTER_VALUE_LIMIT", "dead_letter", "reject"]

# A dead letter must itself fit in a Kafka message (1 MB by default): longer values are cut.
DEAD_LETTER_VALUE_LIMIT = 262_144


def _as_text(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def dead_letter(
    *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, error: str
) -> dict[str, Any]:
    """The `dead-letters` message of SPEC.md for one rejected input message."""
    raw = value or b""
    letter: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset, "key": None}
    if key is not None:
        letter["key"], key_encoding = _as_text(key)
        if key_encoding != "utf-8":
            letter["key_encoding"] = key_encoding
    if len(raw) > DEAD_LETTER_VALUE_LIMIT:
        letter["value_truncated"] = True
        letter["value_bytes"] = len(raw)
        raw = raw[:DEAD_LETTER_VALUE_LIMIT]
    letter["value"], encoding = _as_text(raw)
    if encoding != "utf-8":
        letter["value_encoding"] = encoding
    letter["error"] = error
    letter["received_at"] = format_us(to_us(datetime.now(UTC)))
    return letter


def reject(batch: Batch, topic: str, record: Any, origin: str, error: str) -> None:
    """`record` to `topic` (the dead letters) with the reason, counted as invalid."""
    letter = dead_letter(
        topic=origin,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        error=error,
    )
    batch.out.add(topic, record.key, orjson.dumps(letter))
    batch.tally.event(origin, "invalid")
