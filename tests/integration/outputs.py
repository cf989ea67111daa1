"""Every output message as a downstream consumer reads it, checked against the JSON Schema
`journey schemas export` writes for its topic (SPEC.md, "Outputs") and parsed by the typed
client's models without loss.

On Apache Kafka the reader is librdkafka (confluent-kafka, `isolation.level=read_committed`),
the client most of journey's consumers use, directly or through Kafka Connect: aborted
transactions and their markers must look to it as they should. On the embedded broker,
which runs no transactions, it is the suite's own reader.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from pydantic import BaseModel

from schemas.export import SCHEMAS, schema_of
from schemas.outputs import DeadLetter, ErasureLogEntry, ImpactEntry, MergeEntry, PppUpdate, ReferralLink

__all__ = ["assert_outputs_valid", "read_committed"]

# Topics whose null value is a tombstone (SPEC.md, "Erasure"; "Impact": a key no customer has).
_TOMBSTONES = {"ppp-updates", "impact"}
_MODELS: dict[str, type[BaseModel]] = {
    "ppp-update.json": PppUpdate,
    "referral-link.json": ReferralLink,
    "dead-letter.json": DeadLetter,
    "impact-entry.json": ImpactEntry,
    "erasure-log.json": ErasureLogEntry,
    "merge.json": MergeEntry,
}


def _outputs(names: Any) -> dict[str, tuple[str, str]]:
    """Each output topic: (its SPEC name, its schema file)."""
    return {
        names.ppp_updates: ("ppp-updates", "ppp-update.json"),
        names.referral_links: ("referral-links", "referral-link.json"),
        names.dead_letters: ("dead-letters", "dead-letter.json"),
        names.impact: ("impact", "impact-entry.json"),
        names.erasure_log: ("erasure-log", "erasure-log.json"),
        names.merges: ("merges", "merge.json"),
    }


def read_committed(
    bootstrap: list[str], topic: str, deadline_s: float = 60
) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every message of `topic` up to its last stable offset, as
    librdkafka's consumer with `read_committed` sees them (no group, every partition)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": ",".join(bootstrap),
            "group.id": "journey-outside-reader",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        ended: set[int] = set()
        read: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + deadline_s
        while len(ended) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: no end of partitions {set(partitions) - ended}"
            message = consumer.poll(1.0)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error  # librdkafka's own name
                ended.add(message.partition())
                continue
            ended.discard(message.partition())  # more came after an end: wait for the next
            read.append((message.key(), message.value()))
        return read
    finally:
        consumer.close()


async def _messages(env: Any, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    if env.on_kafka:
        return await asyncio.to_thread(read_committed, env.bootstrap, topic)
    return [(record.key, record.value) for record in await env.read_topic(topic)]


async def assert_outputs_valid(env: Any) -> dict[str, int]:
    """Every message of every output topic valid against its exported schema, a null value
    only where SPEC.md makes it a tombstone, and each parsed by its model without loss.
    Returns how many messages each topic had."""
    invalid: list[str] = []
    counts: dict[str, int] = {}
    for topic, (spec_name, schema_name) in _outputs(env.names).items():
        assert schema_name in SCHEMAS
        validator = Draft202012Validator(schema_of(schema_name), format_checker=FormatChecker())
        model = _MODELS[schema_name]
        messages = await _messages(env, topic)
        counts[spec_name] = len(messages)
        for key, value in messages:
            if value is None:
                if spec_name not in _TOMBSTONES:
                    invalid.append(f"{spec_name} {key!r}: a null value where none is a tombstone")
                continue
            message = json.loads(value)
            for error in validator.iter_errors(message):
                invalid.append(f"{spec_name} {key!r}: {error.message} at {list(error.absolute_path)}")
            parsed = model.model_validate_json(value).model_dump(mode="json", exclude_unset=True)
            if parsed != message:
                invalid.append(f"{spec_name} {key!r}: the model reads {parsed}, the message is {message}")
    assert not invalid, "\n".join(invalid[:20]) + f"\n({len(invalid)} in all)"
    return counts
