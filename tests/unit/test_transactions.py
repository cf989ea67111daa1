"""Exactly-once's choices and its end of table recovery (`stream.kafka.transactions`); the
transactions themselves are proven on Apache Kafka by the integration tests."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.producer.sender import Sender

from stream.kafka import transactions
from stream.kafka.connection import KafkaSetupError
from stream.kafka.transactions import RecoveryPastMarkers, choose_exactly_once, install_coordinator_retries

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


def _find_coordinator_after_a_cut(monkeypatch: pytest.MonkeyPatch, patched: bool) -> int:
    """aiokafka's own sender, looking up a group coordinator whose first answer is lost."""
    lookups: list[str] = []

    async def lookup(self: AIOKafkaClient, kind: Any, key: str) -> int:
        lookups.append(key)
        if len(lookups) == 1:
            raise KafkaConnectionError("Connection at 127.0.0.1:9 closed")
        return 7

    async def nothing(*args: Any, **kwargs: Any) -> bool:
        return True

    monkeypatch.setattr(AIOKafkaClient, "coordinator_lookup", lookup)
    monkeypatch.setattr(transactions, "_installed", set())
    if patched:
        install_coordinator_retries()

    async def find() -> int:
        client = AIOKafkaClient(bootstrap_servers="127.0.0.1:9")
        monkeypatch.setattr(client, "force_metadata_update", nothing)
        monkeypatch.setattr(client, "ready", nothing)
        sender = Sender(
            client,
            acks=-1,
            txn_manager=SimpleNamespace(transactional_id="journey-worker-0"),
            message_accumulator=None,
            retry_backoff_ms=1,
            request_timeout_ms=1000,
        )
        return int(await sender._find_coordinator(CoordinationType.GROUP, "journey"))

    return asyncio.run(find())


def test_a_connection_cut_while_finding_a_coordinator_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _find_coordinator_after_a_cut(monkeypatch, patched=True) == 7


def test_without_the_retry_aiokafka_gives_the_producer_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the retry is for: this error kills the sender routine, and the worker with it.
    with pytest.raises(KafkaError, match="closed"):
        _find_coordinator_after_a_cut(monkeypatch, patched=False)
