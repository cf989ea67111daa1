"""JSON Schema (draft 2020-12) of the events and messages, for producers in other languages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.events import ErasureRequest, Identify, Purchase, Share, Survey, Touchpoint
from schemas.outputs import (
    CustomerState,
    DeadLetter,
    ErasureLogEntry,
    ImpactEntry,
    MergeEntry,
    PppUpdate,
    ReferralLink,
)

__all__ = ["MAJOR_VERSIONS", "SCHEMAS", "export_schemas", "schema_of"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://journey.example/schemas/"
# Each schema's major version, named in its `$id` (`.../v1/ppp-update.json`). A change that
# would reject a message an earlier release could write makes a new major version, said
# in docs/schemas.md; `tests/unit/test_schema_evolution.py` holds every other change to
# what the last release's schemas (`schemas/released/`) accept.
MAJOR_VERSIONS: dict[str, int] = {}

# File name -> (model, what it describes).
SCHEMAS: dict[str, tuple[type[BaseModel], str]] = {
    "touchpoint.json": (Touchpoint, "A touchpoint event (ZMOT, FMOT or SMOT), topic `touchpoints`."),
    "purchase.json": (Purchase, "A purchase or refund event, topic `purchases`."),
    "survey.json": (Survey, "A survey answer, topic `surveys`. The score must lie in its scale."),
    "share.json": (Share, "A share event (UMOT), topic `shares`."),
    "identify.json": (
        Identify,
        "An identify event, topic `identities`: `customer_id` and `anonymous_id` are one person.",
    ),
    "erasure-request.json": (
        ErasureRequest,
        "A request to erase a customer's events up to `requested_at`, topic `erasures`"
        " (and the lines of `journey replay --erasures`).",
    ),
    "erasure-log.json": (ErasureLogEntry, "A message on `erasure-log`, keyed by customer_id."),
    "merge.json": (MergeEntry, "A message on `merges`, keyed by the canonical customer_id."),
    "ppp-update.json": (
        PppUpdate,
        "A message on `ppp-updates`, keyed by customer_id; a null value (tombstone) when the"
        " customer was erased or stopped being a person's canonical id.",
    ),
    "referral-link.json": (ReferralLink, "A message on `referral-links`, keyed by referrer_id."),
    "impact-entry.json": (
        ImpactEntry,
        "A message on `impact`, keyed by dimension/key; a null value (tombstone) when no customer has the key.",
    ),
    "dead-letter.json": (DeadLetter, "A message on `dead-letters`, keyed by the original key."),
    "customer-state.json": (CustomerState, "What GET /customers/{id} answers and journey replay prints."),
}


def schema_of(name: str) -> dict[str, Any]:
    model, description = SCHEMAS[name]
    schema = model.model_json_schema(mode="validation")
    major = MAJOR_VERSIONS.get(name, 1)
    return {"$schema": DRAFT, "$id": f"{BASE_ID}v{major}/{name}", **schema, "description": description}


def export_schemas(directory: Path) -> list[Path]:
    """Write every schema as DIR/NAME.json (stable formatting, so that diffs mean changes)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SCHEMAS:
        path = directory / name
        path.write_text(json.dumps(schema_of(name), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
