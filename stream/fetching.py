"""How long a fetch may wait at the broker for new messages: the floor of end-to-end latency.

Faust creates its consumer with `fetch_max_wait_ms=1500` and no setting to change it. A
broker that holds a fetch until that wait is over when no data was ready at its start (the
embedded one does) then adds up to 1.5 s to every event's path; measured there, p50 was
0.48 s at 500 events/s. Consumers created after `install_fetch_wait` wait at most
JOURNEY_FETCH_MAX_WAIT_MS instead; on Apache Kafka it only costs a few more idle fetches.
"""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient

__all__ = ["install_fetch_wait", "seconds_since_a_broker_answered"]

_state: dict[str, int] = {}
# When a broker last answered one of this process's requests (time.monotonic()): the sign
# that the brokers can be reached, which a worker's /health and metrics report.
_answered: list[float] = []


def seconds_since_a_broker_answered() -> float | None:
    """None before the first answer (a process that never reached a broker)."""
    return time.monotonic() - _answered[0] if _answered else None


def _note_answers() -> None:
    """Stamp every answer: every request of aiokafka's clients (fetches, heartbeats,
    metadata, produce) goes through `AIOKafkaClient.send`, which raises when the connection
    is cut or the broker does not answer in time."""
    original = AIOKafkaClient.send

    async def send(self: AIOKafkaClient, *args: Any, **kwargs: Any) -> Any:
        response = await original(self, *args, **kwargs)
        if _answered:
            _answered[0] = time.monotonic()
        else:
            _answered.append(time.monotonic())
        return response

    AIOKafkaClient.send = send  # no public hook


def install_fetch_wait(max_wait_ms: int) -> None:
    """Cap `fetch_max_wait_ms` of every AIOKafkaConsumer created from now on (process-wide)."""
    if "ms" not in _state:
        original = AIOKafkaConsumer.__init__

        def __init__(self: AIOKafkaConsumer, *topics: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", 500), _state["ms"])
            original(self, *topics, **kwargs)

        AIOKafkaConsumer.__init__ = __init__  # see the module docstring
        _note_answers()
    _state["ms"] = max_wait_ms
