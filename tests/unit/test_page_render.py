"""The page's HTML without a browser: producers' text escaped, figures carried exactly.
(What a person sees is tested in chromium: tests/integration/test_page.py.)"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import orjson

from journey.impact import circle, entry_message, unpack, with_comparisons
from stream.serving.web.page import compact, percent, render_card, render_page, render_sections

_XSS = '<script>alert(1)</script><img src=x onerror="alert(2)">'


class _Elements(HTMLParser):
    """Every start tag with its attributes, as a browser's parser reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _parsed(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.tags


def _entry(dimension: str, key: str) -> dict[str, Any]:
    sums = list(unpack(0))
    sums[0] = 3  # customers
    return entry_message(f"{dimension}/{key}", tuple(sums), 1)


def test_untrusted_text_is_escaped_and_figures_keep_their_api_values() -> None:
    everyone = with_comparisons(_entry("all", "*"), None)
    row = with_comparisons(_entry("campaign", _XSS), everyone)
    rankings = {
        d: {"dimension": d, "entries": 1, "top": [row] if d == "campaign" else []}
        for d in ("campaign", "channel", "referral_channel", "referrer")
    }
    state = {
        "customer_id": _XSS, "csat": 7.5, "cltv": 120.0, "ppp": 900.0, "cltv_365d": 120.0, "version": 2,
        "moments": {"zmot": 1, "fmot": 0, "smot": 0, "umot": 0}, "surveys": 1, "purchases": 1, "refunds": 0,
        "first_seen": "2026-01-01T00:00:00.000000Z", "last_seen": "2026-01-02T00:00:00.000000Z",
        "campaigns": [_XSS], "channels": ["web"], "referred_by": [_XSS], "referral_channels": ["email"],
    }  # fmt: skip
    sections = render_sections(everyone, circle(everyone), rankings, [state])
    html = render_page(sections, render_card(_XSS, state), asset=lambda name: f"/assets/{name}")
    tags = _parsed(html)
    # The only script is the page's own file; no producer's text became an element.
    assert [attrs.get("src") for tag, attrs in tags if tag == "script"] == ["/assets/journey.js"]
    assert not [attrs for tag, attrs in tags if tag == "img" or "onerror" in attrs]
    entries = {attrs["data-entry"] for _, attrs in tags if "data-entry" in attrs}
    assert f"campaign/{_XSS}" in entries and f"customer/{_XSS}" in entries
    values = {
        (attrs["data-entry"], attrs["data-field"]): orjson.loads(attrs["data-value"] or "")
        for _, attrs in tags
        if "data-entry" in attrs
    }
    assert values[(f"customer/{_XSS}", "referred_by")] == [_XSS]
    assert values[(f"customer/{_XSS}", "ppp")] == 900.0
    assert values[(f"campaign/{_XSS}", "customers")] == 3
    assert values[(f"campaign/{_XSS}", "ppp_uplift")] is None  # shown as a dash, kept as null


def test_circle_shares_come_from_the_all_entry() -> None:
    everyone = {
        "moments": {"zmot": 40, "fmot": 30, "smot": 0, "umot": 5},
        "moments_onward": {"fmot": 30, "smot": 0, "umot": 0},
        "referred": 2,
    }
    assert circle(everyone) == {
        "moments": {"zmot": 40, "fmot": 30, "smot": 0, "umot": 5},
        "onward": {"fmot": 0.75, "smot": 0.0, "umot": None},  # nobody at SMOT to go on from
        "referred": 2,
        "k_factor": 0.4,
    }


def test_formats_a_person_reads() -> None:
    assert compact(12_345.67) == "12.3k"
    assert compact(1_234.5) == "1,234.50"
    assert compact(2_500_000) == "2.5M"
    assert percent(0.0623, signed=True) == "+6.2%"
    assert percent(-0.1196, signed=True) == "\u221212.0%"
    assert percent(None) == "\u2014"


def test_an_unknown_customer_gets_a_message() -> None:
    card = render_card("nobody", None)
    assert "No customer \u201cnobody\u201d" in card and 'role="alert"' in card
