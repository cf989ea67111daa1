"""A worker's view of the `impact` topic: rankings equal sorting every entry, after any
updates and tombstones, while parsing only what changed."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from journey.impact import entry_message, pack, unpack
from stream.serving.impact_view import ImpactView

_KEYS = st.sampled_from(["a", "b", "c/d", "été", "50% off", "x", "y", "z"])


def _message(dimension: str, key: str, attributed_cents: int, version: int) -> bytes:
    sums = list(unpack(0))
    sums[0] = 1  # one customer
    sums[11] = attributed_cents * 10_000  # attributed PPP, in millionths
    return orjson.dumps(entry_message(f"{dimension}/{key}", unpack(pack(sums)), version))


@given(st.lists(st.tuples(st.sampled_from(["campaign", "referrer"]), _KEYS, st.integers(-5, 50) | st.none())))
@settings(max_examples=200, deadline=None)
def test_rankings_equal_sorting_every_entry(updates: list[tuple[str, str, int | None]]) -> None:
    view = ImpactView()
    latest: dict[tuple[str, str], int] = {}
    for version, (dimension, key, cents) in enumerate(updates, 1):
        entry_key = f"{dimension}/{key}".encode()
        if cents is None:
            view.apply(entry_key, None)  # a tombstone: the entry has no customer left
            latest.pop((dimension, key), None)
        else:
            view.apply(entry_key, _message(dimension, key, cents, version))
            latest[(dimension, key)] = cents
        for asked in ("campaign", "referrer"):
            mine = sorted((-c, k) for (d, k), c in latest.items() if d == asked)
            answer = view.ranking(asked, 3)
            assert [e["key"] for e in answer["top"]] == [k for _, k in mine[:3]]
            assert answer["entries"] == len(mine)
    counts = view.summary()["dimensions"]
    assert counts["campaign"] == sum(d == "campaign" for d, _ in latest)
    assert set(counts) == {"all", "campaign", "channel", "referrer", "referral_channel", "recovery"}
