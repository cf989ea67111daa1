"""Publishing events to their input topics, keyed by customer_id, as producers should."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream.kafka.connection import start_client
from stream.kafka.topics import TopicNames

__all__ = ["EventPublisher"]


class EventPublisher:
    """An aiokafka producer that sends event dicts (with `type`) to the right topic."""

    def __init__(self, kafka: Mapping[str, Any], names: TopicNames, *, linger_ms: int = 5) -> None:
        self.names = names
        self.sent: Counter[str] = Counter()
        self._producer = AIOKafkaProducer(**kafka, linger_ms=linger_ms, max_batch_size=262_144, acks=1)
        self._pending: list[asyncio.Future[Any]] = []

    async def __aenter__(self) -> EventPublisher:
        await start_client(self._producer)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is None:
                await self.flush()
        finally:
            await self._producer.stop()

    async def send(self, event: dict[str, Any]) -> None:
        """Queue one event dict (with `type`)."""
        await self.send_raw(event["type"], str(event["customer_id"]), orjson.dumps(event))

    async def send_raw(self, event_type: str, customer_id: str, raw: bytes) -> None:
        """Queue the exact bytes of one event of `event_type`, keyed by its customer_id."""
        topic = self.names.for_type(event_type)
        self._pending.append(await self._producer.send(topic, raw, key=customer_id.encode()))
        self.sent[topic] += 1
        if len(self._pending) >= 10_000:
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)

    async def send_paced(
        self, events: Iterable[dict[str, Any]], rate: float | None, duration: float | None = None
    ) -> int:
        """Send at `rate` events/s (None: as fast as possible) for at most `duration` seconds."""
        started = time.monotonic()
        count = 0
        for event in events:
            now = time.monotonic() - started
            if duration is not None and now >= duration:
                break
            if rate:
                ahead = count / rate - now
                if ahead > 0:
                    await self.flush()
                    await asyncio.sleep(ahead)
            await self.send(event)
            count += 1
        await self.flush()
        return count
