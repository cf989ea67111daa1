"""Reading event files (JSON lines or CSV) into validated events, line by line.

The same validation as the worker's (`schemas.decode`), so that `journey publish` refuses
locally exactly what a worker would send to dead-letters.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from schemas.decode import (
    DEFAULT_MAX_EVENT_BYTES,
    InvalidEvent,
    parse_erasure,
    parse_event,
    parse_json,
    validate_event,
)
from schemas.events import ErasureRequest, Incoming
from schemas.wire import json_number

__all__ = ["FileLine", "read_erasure_file", "read_event_file"]

# CSV cells are text; these fields are JSON numbers in events, so numeric text becomes one.
_NUMERIC = {"score", "sentiment"}


@dataclass(slots=True)
class FileLine:
    """One line (or CSV row) of a file: the event and the bytes to send, or why it is invalid."""

    path: Path
    number: int
    event: Incoming | None
    raw: bytes
    error: str | None = None


def _csv_value(name: str, text: str) -> Any:
    if name in _NUMERIC:
        try:
            return Decimal(text)
        except InvalidOperation:
            return text
    return text


def _csv_rows(
    path: Path, default_type: str | None
) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            return
        for row in reader:
            line = reader.line_num
            if None in row:
                yield line, None, "row has more cells than the header"
                continue
            data = {k.strip(): _csv_value(k.strip(), v) for k, v in row.items() if v not in ("", None)}
            if default_type and "type" not in data:
                data["type"] = default_type
            yield line, data, None


def _json_default(value: Any) -> Any:
    # A numeric CSV cell goes out as a JSON number, as the worker requires of scores.
    if isinstance(value, Decimal):
        return json_number(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def read_event_file(
    path: Path,
    *,
    currencies: Collection[str] | None,
    default_type: str | None = None,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    select: Callable[[bytes], bool] | None = None,
) -> Iterator[FileLine]:
    """Every line of a `.csv` file or a JSON-lines file, validated. OSError if unreadable.

    `select` (JSON lines only) picks the lines to validate and yield from their raw bytes;
    the others are skipped unread, which is how parallel replay splits a file."""
    if path.suffix.lower() == ".csv":
        for number, data, problem in _csv_rows(path, default_type):
            if data is None:
                yield FileLine(path, number, None, b"", problem)
                continue
            raw = orjson.dumps(data, default=_json_default)
            try:
                event = validate_event(data, expected_type=None, currencies=currencies)
            except InvalidEvent as exc:
                yield FileLine(path, number, None, raw, str(exc))
                continue
            yield FileLine(path, number, event, raw)
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            raw = line.strip()
            if not raw or (select is not None and not select(raw)):
                continue
            try:
                if default_type is None:
                    # As a worker reads a message: the fast path first (`schemas.decode`).
                    event = parse_event(raw, expected_type=None, currencies=currencies, max_bytes=max_bytes)
                else:
                    data = parse_json(raw, max_bytes=max_bytes)
                    if isinstance(data, dict) and "type" not in data:
                        data["type"] = default_type
                        raw = orjson.dumps(data, default=_json_default)
                    event = validate_event(data, expected_type=None, currencies=currencies)
            except InvalidEvent as exc:
                yield FileLine(path, number, None, raw, str(exc))
                continue
            yield FileLine(path, number, event, raw)


def read_erasure_file(
    path: Path, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> tuple[list[ErasureRequest], list[FileLine]]:
    """The erasure requests of a JSON-lines file, and its invalid lines (their `event` is
    None, their `error` says why). OSError if unreadable."""
    requests: list[ErasureRequest] = []
    invalid: list[FileLine] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            raw = line.strip()
            if not raw:
                continue
            try:
                requests.append(parse_erasure(raw, max_bytes=max_bytes))
            except InvalidEvent as exc:
                invalid.append(FileLine(path, number, None, raw, str(exc)))
    return requests, invalid
