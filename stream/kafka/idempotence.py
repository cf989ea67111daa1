"""Whether the worker's producer can be idempotent: Kafka then writes a retried batch once.

A produce request whose connection is cut after the broker wrote it, but before the answer
came, is sent again by the client; without idempotence the broker writes it twice (seen
through the cut-connection test's proxy: a link twice, an update's version going back).
The embedded broker refuses the producer id this needs, so "auto" asks the broker once at
start, with a producer of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import ClusterAuthorizationFailedError, KafkaError

from stream.kafka.connection import KafkaSetupError

__all__ = ["choose_idempotence"]

_PROBE_TIMEOUT_S = 20.0


async def _broker_grants_producer_ids(kafka: Mapping[str, Any]) -> bool:
    producer = AIOKafkaProducer(**kafka, enable_idempotence=True, acks="all")
    try:
        await asyncio.wait_for(producer.start(), _PROBE_TIMEOUT_S)
    except ClusterAuthorizationFailedError:
        # A secured cluster that grants producer ids, but not to this user.
        raise KafkaSetupError(
            "the broker denies idempotent writes: grant IDEMPOTENT_WRITE on the cluster, or set "
            "JOURNEY_IDEMPOTENCE=off"
        ) from None
    except (KafkaError, TimeoutError):
        return False
    finally:
        await producer.stop()
    return True


async def choose_idempotence(setting: str, kafka: Mapping[str, Any]) -> bool:
    """JOURNEY_IDEMPOTENCE: "on", "off", or "auto" (on where the broker grants producer ids)."""
    if setting == "off":
        return False
    granted = await _broker_grants_producer_ids(kafka)
    if setting == "on" and not granted:
        raise KafkaSetupError(
            "JOURNEY_IDEMPOTENCE=on, but the broker grants no producer id (the embedded broker "
            "cannot): use auto or off there"
        )
    return granted
