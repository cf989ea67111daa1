"""How the page shows one figure: its API value kept in attributes, shown in a friendlier
format, every producer's text escaped."""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Any
from urllib.parse import quote

import orjson

__all__ = [
    "DASH",
    "attr",
    "compact",
    "count",
    "customer_link",
    "figure",
    "holder",
    "json_value",
    "percent",
    "plain",
]

DASH = "\u2014"


def attr(value: str) -> str:
    return escape(value, quote=True)


def json_value(value: Any) -> str:
    """The value exactly as the JSON API writes it."""
    return orjson.dumps(value).decode("utf-8")


def figure(entry: str, field: str, value: Any, shown: str, *, tag: str = "span", extra: str = "") -> str:
    """One figure: shown as `shown`, its API value and where it comes from in attributes."""
    return (
        f'<{tag}{extra} data-entry="{attr(entry)}" data-field="{attr(field)}" '
        f'data-value="{attr(json_value(value))}">{escape(shown)}</{tag}>'
    )


def holder(entry: str, field: str, value: Any, inner: str, *, tag: str = "span", extra: str = "") -> str:
    """An element holding a whole object or list field (`moments`) around its parts' figures."""
    return (
        f'<{tag}{extra} data-entry="{attr(entry)}" data-field="{attr(field)}" '
        f'data-value="{attr(json_value(value))}">{inner}</{tag}>'
    )


def compact(value: float | int | None) -> str:
    """12.3k, 1.23M: a figure a person takes in at a glance."""
    if value is None:
        return DASH
    size = abs(value)
    if size >= 1_000_000_000:
        return f"{value / 1_000_000_000:.3g}B"
    if size >= 1_000_000:
        return f"{value / 1_000_000:.3g}M"
    if size >= 10_000:
        return f"{value / 1_000:.3g}k"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}"


def count(value: int | None) -> str:
    return DASH if value is None else f"{value:,}"


def percent(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return DASH
    shown = f"{Decimal(str(value)) * 100:.1f}"
    if signed and value > 0:
        shown = "+" + shown
    return shown.replace("-", "\u2212") + "%"


def plain(value: float | None) -> str:
    return DASH if value is None else f"{value:,.2f}"


def customer_link(customer_id: str) -> str:
    return f'<a href="/?customer={attr(quote(customer_id, safe=""))}#card">{escape(customer_id)}</a>'
