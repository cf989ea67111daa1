"""Sending erasure requests and waiting for what the workers log of them (`journey forget`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.events import ErasureRequest
from stream.kafka.connection import start_client
from stream.kafka.offsets import install_end_offsets_probe
from stream.kafka.reading import assign_whole
from stream.kafka.topics import TopicNames

__all__ = ["request_json", "send_erasures"]


def request_json(request: ErasureRequest) -> bytes:
    """An erasure request as the `erasures` topic carries it (SPEC.md, "Erasure")."""
    at = request.requested_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps(
        {"request_id": request.request_id, "customer_id": request.customer_id, "requested_at": at}
    )


async def send_erasures(
    kafka: Mapping[str, Any], names: TopicNames, requests: Sequence[ErasureRequest], *, timeout_s: float
) -> dict[str, dict[str, Any]]:
    """Send `requests` to `erasures` and return the `erasure-log` messages that answer them,
    by request_id, as they came within `timeout_s` (fewer than asked when none came).

    The log is read from its end as it was before sending, so that only answers to these
    requests count; a request already logged earlier (a repeated request_id) is not
    logged again and so is not answered."""
    install_end_offsets_probe()
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False, isolation_level="read_committed")
    await start_client(consumer)
    try:
        tps = await assign_whole(consumer, names.erasure_log)
        for tp, end in (await consumer.end_offsets(tps)).items():
            consumer.seek(tp, end)
        producer = AIOKafkaProducer(**kafka, acks="all")
        await start_client(producer)
        try:
            for request in requests:
                await producer.send(names.erasures, request_json(request), key=request.customer_id.encode())
            await producer.flush()
        finally:
            await producer.stop()
        wanted = {request.request_id for request in requests}
        answers: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while wanted - set(answers) and time.monotonic() < deadline:
            batch = await consumer.getmany(
                timeout_ms=max(1, int(min(0.5, deadline - time.monotonic()) * 1000))
            )
            for records in batch.values():
                for record in records:
                    if record.value is None:
                        continue
                    message = orjson.loads(record.value)
                    if message.get("request_id") in wanted:
                        answers[message["request_id"]] = message
            await asyncio.sleep(0)
        return answers
    finally:
        # aiokafka's fetcher can raise the cancel of its own pending fetch while it closes
        # (a broker that was slow to answer): nothing of ours is lost by then.
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()
