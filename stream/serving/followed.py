"""A compacted topic read whole by every worker: the latest value of each key, as bytes."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from stream.kafka.reading import TopicMissing, read_topic

__all__ = ["FollowedTopic"]

log = logging.getLogger(__name__)


class FollowedTopic(ABC):
    """The latest message of every key of a topic, read from the beginning and then as the
    topic grows, as a downstream consumer would (no consumer group).

    A subclass keeps the bytes that came as it will look them up (`_keep`, `_forget`) and
    parses them when asked: a busy worker's view takes thousands of messages a second and
    answers a few requests."""

    # What a missing topic means to the reader of the log.
    missing = "answers stay empty"

    def __init__(self) -> None:
        # Messages read so far: a watcher compares it with what it saw to know when to look again.
        self.changes = 0

    def apply(self, key: bytes, value: bytes | None) -> None:
        """One message: its key's latest value, or None for a tombstone (the key is gone)."""
        self._keep(key.decode("utf-8"), value)
        self.changes += 1

    @abstractmethod
    def _keep(self, key: str, value: bytes | None) -> None: ...

    @abstractmethod
    def _forget(self) -> None: ...

    async def follow(self, kafka: Mapping[str, Any], topic: str) -> None:
        """Read `topic` from the beginning and keep following it until cancelled."""
        while True:
            try:
                async for record in read_topic(kafka, topic, from_beginning=True, follow=True):
                    self.apply(record.key, record.value)
            except TopicMissing:
                log.warning("Topic %s does not exist (yet): %s", topic, self.missing)
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker went away: read it again when it is back
                log.exception("Reading %s failed; reading it again in 1 s", topic)
            await asyncio.sleep(1.0)
            self.reset()

    def reset(self) -> None:
        """Forget everything read (the topic is read again from its beginning)."""
        self._forget()
        self.changes += 1
