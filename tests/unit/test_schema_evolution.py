"""Schemas that evolve safely: each exported schema names its major version in `$id`, and
within a major version it accepts every message the last release's schema accepted
(`schemas/released/<version>/`), as a schema registry's BACKWARD mode checks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from schemas.compat import breaking_changes, major_version
from schemas.export import SCHEMAS, schema_of

ROOT = Path(__file__).resolve().parents[2]
RELEASED = ROOT / "schemas" / "released"
DOCS = ROOT / "docs" / "schemas.md"


def _version(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in folder.name.split("."))


def last_release() -> Path:
    return max((p for p in RELEASED.iterdir() if p.is_dir()), key=_version)


def _released() -> list[str]:
    return sorted(p.name for p in last_release().glob("*.json"))


@pytest.mark.parametrize("name", _released())
def test_within_a_major_version_a_schema_accepts_all_the_last_release_wrote(name: str) -> None:
    old = json.loads((last_release() / name).read_text(encoding="utf-8"))
    assert name in SCHEMAS, f"{name} is gone: a new major version, said in docs/schemas.md"
    new = schema_of(name)
    if major_version(new) > major_version(old):
        # A breaking change is allowed only as a new major version, documented.
        assert re.search(rf"`{re.escape(name)}`.*v{major_version(new)}", DOCS.read_text(encoding="utf-8")), (
            name
        )
        return
    assert major_version(new) == major_version(old), name
    assert breaking_changes(old, new) == [], name


def test_every_id_names_its_major_version() -> None:
    for name in SCHEMAS:
        schema = schema_of(name)
        assert schema["$id"].endswith(f"/v{major_version(schema)}/{name}"), schema["$id"]


def _object(**properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": sorted(properties),
    }


def test_the_check_sees_what_would_reject_an_old_message() -> None:
    kind = {"enum": ["a", "b"], "type": "string"}
    old = _object(kind=kind, n={"type": "integer", "minimum": 0}, x={"type": "string"})
    assert breaking_changes(old, old) == []
    # Widening is compatible: a new enum value, a looser bound, a new optional field.
    wider = _object(
        kind={"enum": ["a", "b", "c"], "type": "string"}, n={"type": "number"}, x={"type": "string"}
    )
    wider["properties"]["more"] = {"type": "string"}
    assert breaking_changes(old, wider) == []
    # Narrowing is not: a value dropped, a tighter bound, a field required or removed.
    narrower = _object(
        kind={"enum": ["a"], "type": "string"}, n={"type": "integer", "minimum": 1}, y={"type": "string"}
    )
    found = breaking_changes(old, narrower)
    assert any("values ['b']" in line for line in found), found
    assert any("minimum 1" in line for line in found), found
    assert any("$.y: now required" in line for line in found), found
    assert any("$.x: removed" in line for line in found), found


def test_the_check_follows_refs_and_any_of() -> None:
    old = {
        "$defs": {"Link": _object(id={"type": "string"})},
        **_object(
            links={"type": "array", "items": {"$ref": "#/$defs/Link"}},
            p={"anyOf": [{"type": "number"}, {"type": "null"}]},
        ),
    }
    new = json.loads(json.dumps(old))
    new["$defs"]["Link"]["properties"]["id"] = {"type": "string", "maxLength": 8}
    new["properties"]["p"] = {"type": "number"}
    found = breaking_changes(old, new)
    assert any("$.links[].id: maxLength 8" in line for line in found), found
    assert any("$.p" in line and "null" in line for line in found), found


def test_the_last_release_did_not_know_identify_as_a_cause_and_this_one_does() -> None:
    # What consumers saw fail: a merge's update has cause_type "identify" (SPEC.md, "Outputs").
    old = json.loads((last_release() / "ppp-update.json").read_text(encoding="utf-8"))
    assert "identify" not in old["properties"]["cause_type"]["enum"]
    assert "identify" in schema_of("ppp-update.json")["properties"]["cause_type"]["enum"]
