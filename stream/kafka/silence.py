"""When a broker last answered this process: what a worker's /health and
`journey_broker_silence_seconds` report, so that a cut connection or brokers down show as
such and not as a quiet stream (a worker hears from a broker every heartbeat).
"""

from __future__ import annotations

import time
from typing import Any

from aiokafka.client import AIOKafkaClient

__all__ = ["install_answer_clock", "seconds_since_a_broker_answered"]

# When a broker last answered one of this process's requests (time.monotonic()): the sign
# that the brokers can be reached, which a worker's /health and metrics report.
_answered: list[float] = []
_installed: set[str] = set()


def seconds_since_a_broker_answered() -> float | None:
    """None before the first answer (a process that never reached a broker)."""
    return time.monotonic() - _answered[0] if _answered else None


def install_answer_clock() -> None:
    """Stamp every answer: every request of aiokafka's clients (fetches, heartbeats,
    metadata, produce) goes through `AIOKafkaClient.send`, which raises when the connection
    is cut or the broker does not answer in time."""
    if _installed:
        return
    _installed.add("clock")
    original = AIOKafkaClient.send

    async def send(self: AIOKafkaClient, *args: Any, **kwargs: Any) -> Any:
        response = await original(self, *args, **kwargs)
        if _answered:
            _answered[0] = time.monotonic()
        else:
            _answered.append(time.monotonic())
        return response

    AIOKafkaClient.send = send  # no public hook
