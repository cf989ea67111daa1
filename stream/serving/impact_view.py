"""Every impact entry, as the `impact` topic has it, in every worker.

An entry is owned by one worker (the partition its changes arrive on), but `GET
/impact/{dimension}?top=N` ranks the keys of all partitions, and any worker must answer
every impact request. The entries are few (one per campaign, channel, referrer and share
channel) and the topic is compacted, so each worker reads all of it, from the beginning and
then as it grows, as a downstream consumer would (no consumer group): asking the owners of
every partition at each request would cost a round trip per worker and fail with any of them.
"""

from __future__ import annotations

import heapq
from typing import Any

import orjson

from journey.impact import (
    ALL_KEY,
    DIMENSIONS,
    circle,
    entry_message,
    split_key,
    unpack,
    with_comparisons,
)
from stream.serving.followed import FollowedTopic

__all__ = ["ImpactView"]
_EMPTY = unpack(0)  # every sum 0


class ImpactView(FollowedTopic):
    """The latest message of every `impact` key, and the answers built on it.

    A key's messages all sit on one partition, written by the one owner of the entry, so
    the last one read is the newest (the tests check that versions only grow in topic order)."""

    missing = "impact answers stay empty"

    def __init__(self) -> None:
        super().__init__()
        # The entries by dimension (key without the dimension), and each entry's attributed
        # PPP with the message it was read from: a ranking parses only the entries that
        # changed since the last one, not every referrer a big deployment has.
        self.dimensions: dict[str, dict[str, bytes]] = {}
        self._ranked_by: dict[str, tuple[bytes, float]] = {}

    def _keep(self, key: str, value: bytes | None) -> None:
        dimension, rest = split_key(key)
        if value is None:
            self.dimensions.get(dimension, {}).pop(rest, None)
            self._ranked_by.pop(key, None)
        else:
            self.dimensions.setdefault(dimension, {})[rest] = value

    def _forget(self) -> None:
        self.dimensions.clear()
        self._ranked_by.clear()

    def _raw(self, dimension: str, key: str) -> bytes | None:
        return self.dimensions.get(dimension, {}).get(key)

    def _attributed_ppp(self, entry_key: str, raw: bytes) -> float:
        cached = self._ranked_by.get(entry_key)
        if cached is not None and cached[0] is raw:
            return cached[1]
        ppp = float(orjson.loads(raw)["attributed_ppp"])
        self._ranked_by[entry_key] = (raw, ppp)
        return ppp

    def _everyone(self) -> dict[str, Any]:
        raw = self._raw(*split_key(ALL_KEY))
        return entry_message(ALL_KEY, _EMPTY, 0) if raw is None else orjson.loads(raw)

    def summary(self) -> dict[str, Any]:
        """`GET /impact`: the `all` entry with its comparisons and the entries per dimension."""
        counts = {dimension: len(self.dimensions.get(dimension, ())) for dimension in DIMENSIONS}
        return {**with_comparisons(self._everyone(), None), "dimensions": counts}

    def circle(self) -> dict[str, Any]:
        """`GET /circle`: the moments of the `all` entry, the share going on, the arc back."""
        return circle(self._everyone())

    def entry(self, dimension: str, key: str) -> dict[str, Any] | None:
        """One entry with its comparisons, or None when unknown."""
        raw = self._raw(dimension, key)
        return None if raw is None else with_comparisons(orjson.loads(raw), self._everyone())

    def ranking(self, dimension: str, top: int) -> dict[str, Any]:
        """A dimension's entries by attributed PPP (then key), the first `top` of them."""
        entries = self.dimensions.get(dimension, {})
        prefix = f"{dimension}/"
        ranked = heapq.nsmallest(
            top, entries, key=lambda key: (-self._attributed_ppp(prefix + key, entries[key]), key)
        )
        everyone = self._everyone()
        return {
            "dimension": dimension,
            "entries": len(entries),
            "top": [with_comparisons(orjson.loads(entries[key]), everyone) for key in ranked],
        }

    @staticmethod
    def known(dimension: str) -> bool:
        return dimension in DIMENSIONS
