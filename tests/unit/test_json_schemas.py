"""The exported JSON Schemas: in step with the models, and usable by a standard validator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from schemas.export import SCHEMAS, export_schemas
from stream.kafka.topics import INPUT_TOPICS

COMMITTED = Path(__file__).resolve().parents[2] / "schemas" / "json"


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((COMMITTED / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def test_committed_schemas_equal_the_models(tmp_path: Path) -> None:
    export_schemas(tmp_path)
    for name in SCHEMAS:
        fresh, committed = (tmp_path / name).read_text(), (COMMITTED / name).read_text()
        assert fresh == committed, f"schemas/json/{name} is stale: run `journey schemas export schemas/json`"
    assert {p.name for p in COMMITTED.glob("*.json")} == set(SCHEMAS)


def test_every_conformance_event_is_valid_under_its_schema(conformance: Any) -> None:
    for event in conformance.events:
        errors = list(validator(f"{event['type']}.json").iter_errors(event))
        assert errors == [], (event, [e.message for e in errors])


# The bad conformance messages whose fault a schema can express (not "no known rate",
# "score outside its scale" or "type does not match the topic").
@pytest.mark.parametrize("event_id", ["b3", "b5", "b6", "b7", "b8", "b9", ""])
def test_bad_conformance_messages_that_a_schema_can_see_are_refused(conformance: Any, event_id: str) -> None:
    found = 0
    for topic, raw in conformance.bad_messages:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(data, dict) and data.get("event_id") == event_id:
            found += 1
            assert not validator(f"{INPUT_TOPICS[topic]}.json").is_valid(data), data
    assert found == 1


def test_output_examples_validate(impact_conformance: Any, recovery_conformance: Any) -> None:
    # The recovery set's states have every field but `aliases` (identity's, not built yet).
    for state in recovery_conformance.expected_states.values():
        assert validator("customer-state.json").is_valid({"aliases": [], **state, "version": 1})
    assert not validator("customer-state.json").is_valid(
        {"aliases": [], **state, "recovery": "fine", "version": 1}
    )
    published = {
        "dimension", "key", "customers", "buyers", "surveyed", "referred", "moments",
        "ppp", "cltv", "csat_sum", "attributed_ppp", "attributed_cltv",
    }  # fmt: skip
    for entry in impact_conformance.expected_impact + recovery_conformance.expected_impact:
        message = {name: value for name, value in entry.items() if name in published}
        assert validator("impact-entry.json").is_valid({**message, "version": 1})
        assert not validator("impact-entry.json").is_valid({**message, "version": 1, "mean_ppp": 1.0})


def test_identity_events_and_states_validate(identity_conformance: Any) -> None:
    identifies = [json.loads(line) for line in identity_conformance.raw_lines if b'"identify"' in line]
    assert len(identifies) >= 20
    for event in identifies:
        errors = list(validator("identify.json").iter_errors(event))
        assert errors == [], (event, [e.message for e in errors])
    assert not validator("identify.json").is_valid({**identifies[0], "anonymous_id": ""})
    for state in identity_conformance.expected_states.values():
        assert validator("customer-state.json").is_valid(
            {**state, "version": 1, "smot_failures": 0, "recovery": None}
        )
    merge = {
        "customer_id": "c-1",
        "merged_ids": ["anon-1"],
        "aliases": ["anon-1"],
        "merged_at": "2026-03-01T10:00:00Z",
        "links_retracted": [{"share_id": "s-1", "referrer_id": "c-9", "referred_id": "anon-1"}],
    }
    assert validator("merge.json").is_valid(merge)
    assert not validator("merge.json").is_valid({**merge, "merged_ids": "anon-1"})
