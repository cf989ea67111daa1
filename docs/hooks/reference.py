"""MkDocs hook: the reference pages' tables made from the code, so that they cannot fall
behind it. A page asks for one with a line `<!-- generated: NAME -->`; `make docs` builds
the site with `--strict`, and `tests/unit/test_docs_site.py` checks the tables name
everything the code has."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from journey.settings import Settings
from schemas.export import SCHEMAS, schema_of
from stream.serving.metrics import JourneyMetrics

ROOT = Path(__file__).resolve().parents[2]
_MARK = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    """Every `JOURNEY_*` setting: its default and what it does (from the Settings class)."""
    rows = ["| setting | default | what it does |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default is not None else ""
        shown = f"`{default}`" if default not in ("", None) else "(empty)"
        rows.append(f"| `JOURNEY_{name.upper()}` | {_cell(shown)} | {_cell(field.description or '')} |")
    return "\n".join(rows)


def _type_of(spec: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in spec:
        spec = defs[spec["$ref"].rsplit("/", 1)[1]]
    if "const" in spec:
        return f"`{json.dumps(spec['const'])}`"
    if "enum" in spec:
        return "one of " + ", ".join(f"`{json.dumps(value)}`" for value in spec["enum"])
    if "anyOf" in spec:
        return " or ".join(_type_of(option, defs) for option in spec["anyOf"])
    kind = spec.get("type", "any")
    if spec.get("format"):
        kind += f" ({spec['format']})"
    return str(kind)


def _limits(spec: dict[str, Any]) -> str:
    words = []
    for key, label in (
        ("minLength", "at least {} characters"),
        ("maxLength", "at most {} characters"),
        ("minimum", ">= {}"),
        ("maximum", "<= {}"),
        ("exclusiveMinimum", "> {}"),
    ):
        if key in spec:
            words.append(label.format(spec[key]))
    return ", ".join(words)


def event_fields() -> str:
    """The fields of every input event and output message, from their JSON Schemas."""
    parts = []
    for name in SCHEMAS:
        schema = schema_of(name)
        defs = schema.get("$defs", {})
        required = set(schema.get("required", []))
        rows = ["| field | type | required | notes |", "| --- | --- | --- | --- |"]
        for field, spec in schema.get("properties", {}).items():
            notes = " ".join(filter(None, [_limits(spec), spec.get("description", "")]))
            rows.append(
                f"| `{field}` | {_cell(_type_of(spec, defs))} | {'yes' if field in required else 'no'} | {_cell(notes)} |"
            )
        title = name.removesuffix(".json")
        parts.append(
            f"## {title}\n\n{schema['description']} Schema: `schemas/json/{name}`.\n\n" + "\n".join(rows)
        )
    return "\n\n".join(parts)


def metrics_table() -> str:
    """Every metric a worker exports, with its labels and help (from JourneyMetrics)."""
    rows = ["| metric | type | labels | what it counts |", "| --- | --- | --- | --- |"]
    registry = JourneyMetrics().registry
    collectors: list[Any] = list(registry._collector_to_names)  # noqa: SLF001  # unused metrics' labels too
    for collector in collectors:
        kind = collector._type  # noqa: SLF001
        name = collector._name + ("_total" if kind == "counter" else "")  # noqa: SLF001
        labels = ", ".join(f"`{label}`" for label in collector._labelnames)  # noqa: SLF001
        rows.append(f"| `{name}` | {kind} | {labels} | {_cell(collector._documentation)} |")  # noqa: SLF001
    return "\n".join(rows)


def changelog() -> str:
    return (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


GENERATED = {
    "settings": settings_table,
    "events": event_fields,
    "metrics": metrics_table,
    "changelog": changelog,
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    return _MARK.sub(lambda match: GENERATED[match.group(1)](), markdown)
