"""A typed Python client for the people around journey: producers and score consumers.

async with JourneyProducer("kafka://localhost:9092") as producer:
    await producer.send(Purchase(event_id="e-1", customer_id="c-1", ...))

async for update in JourneyConsumer("kafka://localhost:9092").ppp_updates():
    print(update.customer_id, update.ppp)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas.events import Incoming
from schemas.outputs import MergeEntry, PppUpdate, ReferralLink
from schemas.wire import event_json
from stream.kafka.connection import start_client
from stream.kafka.reading import read_topic
from stream.kafka.topics import TopicNames

__all__ = ["JourneyConsumer", "JourneyProducer"]


def _bootstrap(broker: str) -> list[str]:
    return [part.strip() for part in broker.removeprefix("kafka://").split(",") if part.strip()]


class JourneyProducer:
    """Sends validated events to their topics, keyed by customer_id (at-least-once safe:
    resending an event with the same event_id changes nothing downstream)."""

    def __init__(self, broker: str, *, topic_prefix: str = "", **client_options: Any) -> None:
        """`client_options` go to aiokafka as they are (e.g. security_protocol, ssl_context)."""
        self._names = TopicNames(topic_prefix)
        options = {"linger_ms": 5, "acks": "all", **client_options}
        self._producer = AIOKafkaProducer(bootstrap_servers=_bootstrap(broker), **options)

    async def __aenter__(self) -> JourneyProducer:
        await start_client(self._producer)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._producer.stop()

    async def send(self, event: Incoming) -> None:
        """Send one event and wait until the broker has it."""
        topic = self._names.for_type(event.type)
        await self._producer.send_and_wait(topic, event_json(event), key=event.customer_id.encode())


class JourneyConsumer:
    """Reads journey's outputs as models, following the topics. Updates older than what was
    already seen for a customer (a lower or equal `version`) are dropped, so the caller sees
    each customer's scores only move forward. An erased customer's tombstone is not yielded
    (the customer's scores are gone); its versions count again from 1 after it."""

    def __init__(
        self, broker: str, *, topic_prefix: str = "", from_beginning: bool = True, **client_options: Any
    ) -> None:
        self._kafka = {"bootstrap_servers": _bootstrap(broker), **client_options}
        self._names = TopicNames(topic_prefix)
        self._from_beginning = from_beginning

    def _records(self, topic: str) -> AsyncGenerator[Any, None]:
        return read_topic(self._kafka, topic, from_beginning=self._from_beginning, follow=True)

    async def ppp_updates(self) -> AsyncIterator[PppUpdate]:
        latest: dict[str, int] = {}
        async with contextlib.aclosing(self._records(self._names.ppp_updates)) as records:
            async for record in records:
                if record.value is None:
                    # A tombstone: the customer was erased; a later state starts at version 1.
                    latest.pop(record.key.decode("utf-8"), None)
                    continue
                update = PppUpdate.model_validate_json(record.value)
                if update.version <= latest.get(update.customer_id, 0):
                    continue
                latest[update.customer_id] = update.version
                yield update

    async def referral_links(self) -> AsyncIterator[ReferralLink]:
        async with contextlib.aclosing(self._records(self._names.referral_links)) as records:
            async for record in records:
                yield ReferralLink.model_validate_json(record.value)

    async def merges(self) -> AsyncIterator[MergeEntry]:
        """What each identity merge did: the ids that stopped being canonical, the person's
        aliases, and the links retracted (SPEC.md, "Identity")."""
        async with contextlib.aclosing(self._records(self._names.merges)) as records:
            async for record in records:
                yield MergeEntry.model_validate_json(record.value)
