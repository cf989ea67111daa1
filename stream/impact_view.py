"""Every impact entry, as the `impact` topic has it, in every worker.

An entry is owned by one worker (the partition its changes arrive on), but `GET
/impact/{dimension}?top=N` ranks the keys of all partitions, and any worker must answer
every impact request. The entries are few (one per campaign, channel, referrer and share
channel) and the topic is compacted, so each worker reads all of it, from the beginning and
then as it grows, as a downstream consumer would (no consumer group): asking the owners of
every partition at each request would cost a round trip per worker and fail with any of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from journey.impact import ALL_KEY, DIMENSIONS, dimension_counts, entry_message, unpack, with_comparisons
from stream.tail import TopicMissing, read_topic

__all__ = ["ImpactView"]

log = logging.getLogger(__name__)
_EMPTY = unpack(0)  # every sum 0


class ImpactView:
    """The latest message of every `impact` key, and the answers built on it.

    Kept as the bytes that came, and read when asked: a busy worker's view takes thousands
    of messages a second and answers a few requests. A key's messages all sit on one
    partition, written by the one owner of the entry, so the last one read is the newest
    (the tests check that versions only grow in topic order)."""

    def __init__(self) -> None:
        self.raw: dict[str, bytes] = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.raw.pop(key.decode("utf-8"), None)  # the entry has no customer left
        else:
            self.raw[key.decode("utf-8")] = value

    async def follow(self, kafka: Mapping[str, Any], topic: str) -> None:
        """Read `topic` from the beginning and keep following it until cancelled."""
        while True:
            try:
                async for record in read_topic(kafka, topic, from_beginning=True, follow=True):
                    self.apply(record.key, record.value)
            except TopicMissing:
                log.warning("Topic %s does not exist (yet): impact answers stay empty", topic)
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker went away: read it again when it is back
                log.exception("Reading %s failed; reading it again in 1 s", topic)
            await asyncio.sleep(1.0)
            self.raw.clear()

    def _everyone(self) -> dict[str, Any]:
        raw = self.raw.get(ALL_KEY)
        return entry_message(ALL_KEY, _EMPTY, 0) if raw is None else orjson.loads(raw)

    def summary(self) -> dict[str, Any]:
        """`GET /impact`: the `all` entry with its comparisons and the entries per dimension."""
        return {**with_comparisons(self._everyone(), None), "dimensions": dimension_counts(self.raw)}

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
