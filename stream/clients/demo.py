"""`journey up --demo`: simulated journeys streamed into the worker, and the updates shown."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import AIOKafkaConsumer

from journey.settings import Settings
from journey.simulate import JourneySimulator
from stream.clients.publisher import EventPublisher
from stream.kafka.connection import kafka_options
from stream.kafka.topics import TopicNames
from stream.worker import Worker

__all__ = ["add_demo"]


def _line(update: dict[str, object]) -> str:
    return (
        f"  {update['customer_id']:<10} v{update['version']:<3} csat {update['csat']:>5} "
        f"cltv {update['cltv']:>9} ppp {update['ppp']:>10}  "
        f"after {update['cause_type']} {update['cause_event_id']}"
    )


def add_demo(worker: Worker, settings: Settings, *, rate: float, seed: int) -> None:
    """Register two tasks on the worker: a paced simulator and a printer of `ppp-updates`."""
    names = TopicNames(settings.topic_prefix, settings.app_id)
    kafka = kafka_options(settings)
    currencies = sorted(settings.rates.rates)

    @worker.app.task
    async def simulate() -> None:
        simulator = JourneySimulator(
            seed=seed,
            customers=1_000_000,
            currencies=currencies,
            start=datetime.now(UTC) - timedelta(days=365),
            prefix="demo",
        )
        async with EventPublisher(kafka, names) as publisher:
            await publisher.send_paced(simulator.events(), rate)

    @worker.app.task
    async def show_updates() -> None:
        consumer = AIOKafkaConsumer(
            names.ppp_updates, **kafka, auto_offset_reset="latest", isolation_level="read_committed"
        )
        await consumer.start()
        try:
            async for message in consumer:
                if message.value is None:  # a tombstone: the customer was erased
                    line = f"  {message.key.decode('utf-8', 'replace')} erased"
                else:
                    line = _line(orjson.loads(message.value))
                print(line, flush=True)  # noqa: T201  # the demo's output
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await consumer.stop()
