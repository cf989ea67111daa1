"""Every impact entry, as the `impact` topic has it, in every worker.

An entry is owned by one worker (the partition its changes arrive on), but `GET
/impact/{dimension}?top=N` ranks the keys of all partitions, and any worker must answer
every impact request. The entries are few (one per campaign, channel, referrer and share
channel) and the topic is compacted, so each worker reads all of it, from the beginning and
then as it grows, as a downstream consumer would (no consumer group): asking the owners of
every partition at each request would cost a round trip per worker and fail with any of them.
"""

from __future__ import annotations

from typing import Any

import orjson

from journey.impact import (
    ALL_KEY,
    DIMENSIONS,
    circle,
    dimension_counts,
    entry_message,
    unpack,
    with_comparisons,
)
from stream.followed import FollowedTopic

__all__ = ["ImpactView"]
_EMPTY = unpack(0)  # every sum 0


class ImpactView(FollowedTopic):
    """The latest message of every `impact` key, and the answers built on it.

    A key's messages all sit on one partition, written by the one owner of the entry, so
    the last one read is the newest (the tests check that versions only grow in topic order)."""

    missing = "impact answers stay empty"

    def _everyone(self) -> dict[str, Any]:
        raw = self.raw.get(ALL_KEY)
        return entry_message(ALL_KEY, _EMPTY, 0) if raw is None else orjson.loads(raw)

    def summary(self) -> dict[str, Any]:
        """`GET /impact`: the `all` entry with its comparisons and the entries per dimension."""
        return {**with_comparisons(self._everyone(), None), "dimensions": dimension_counts(self.raw)}

    def circle(self) -> dict[str, Any]:
        """`GET /circle`: the moments of the `all` entry, the share going on, the arc back."""
        return circle(self._everyone())

    def entry(self, dimension: str, key: str) -> dict[str, Any] | None:
        """One entry with its comparisons, or None when unknown."""
        raw = self.raw.get(f"{dimension}/{key}")
        return None if raw is None else with_comparisons(orjson.loads(raw), self._everyone())

    def ranking(self, dimension: str, top: int) -> dict[str, Any]:
        """A dimension's entries by attributed PPP (then key), the first `top` of them."""
        prefix = f"{dimension}/"
        mine = [orjson.loads(raw) for key, raw in self.raw.items() if key.startswith(prefix)]
        mine.sort(key=lambda entry: (-entry["attributed_ppp"], entry["key"]))
        everyone = self._everyone()
        return {
            "dimension": dimension,
            "entries": len(mine),
            "top": [with_comparisons(entry, everyone) for entry in mine[:top]],
        }

    @staticmethod
    def known(dimension: str) -> bool:
        return dimension in DIMENSIONS
