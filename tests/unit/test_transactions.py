"""Exactly-once's choices (`stream.kafka.transactions`); the transactions themselves are
proven on Apache Kafka by the integration tests, and the end of a table's recovery past
its changelog's markers in test_restoring.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.producer.sender import Sender

from stream.kafka import transactions
from stream.kafka.connection import KafkaSetupError
from stream.kafka.transactions import choose_exactly_once, install_coordinator_retries

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
