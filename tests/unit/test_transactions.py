"""Exactly-once's choices and its end of table recovery (`stream.transactions`); the
transactions themselves are proven on Apache Kafka by the integration tests."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from stream.connection import KafkaSetupError
from stream.transactions import RecoveryPastMarkers, choose_exactly_once

# Nothing listens here: a probe would fail, so a choice made without one shows.
_NOWHERE = {"bootstrap_servers": "127.0.0.1:9", "request_timeout_ms": 1000}


def test_off_asks_no_broker() -> None:
    assert asyncio.run(choose_exactly_once("off", True, _NOWHERE)) is False


def test_auto_without_producer_ids_is_off_at_once() -> None:
    # The idempotence probe found no producer ids (the embedded broker): no second probe.
    assert asyncio.run(choose_exactly_once("auto", False, _NOWHERE)) is False


def test_on_without_transactions_refuses_to_start() -> None:
    with pytest.raises(KafkaSetupError, match="JOURNEY_EXACTLY_ONCE=on"):
        asyncio.run(choose_exactly_once("on", False, _NOWHERE))


def _recovery(highwater: int, offset: int) -> Any:
    return SimpleNamespace(
        in_recovery=True,
        active_highwaters=Counter({"tp": highwater}),
        active_offsets=Counter({"tp": offset}),
    )


def _tick(past: RecoveryPastMarkers, recovery: Any, position: int | None) -> None:
    async def at(_: Any) -> int | None:
        return position

    asyncio.run(past.tick(recovery, at))


def test_recovery_ends_past_a_trailing_marker_once_the_offset_stood_still() -> None:
    """Faust's highwater is the end offset minus one: a changelog ending in a commit marker
    at offset 9 has highwater 9, its last record is 8, and the consumer's position is 10."""
    past, recovery = RecoveryPastMarkers(), _recovery(highwater=9, offset=8)
    _tick(past, recovery, 10)
    assert recovery.active_offsets["tp"] == 8  # once: records may still be on their way
    _tick(past, recovery, 10)
    assert recovery.active_offsets["tp"] == 9  # nothing came: only the marker was left


def test_recovery_waits_while_records_are_still_to_come() -> None:
    past, recovery = RecoveryPastMarkers(), _recovery(highwater=9, offset=5)
    for _ in range(3):
        _tick(past, recovery, 9)  # the consumer has not read past the end
    assert recovery.active_offsets["tp"] == 5
    _tick(past, recovery, 10)
    recovery.active_offsets["tp"] = 7  # a record came meanwhile
    _tick(past, recovery, 10)
    assert recovery.active_offsets["tp"] == 7
