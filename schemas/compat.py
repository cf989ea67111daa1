"""Whether a new JSON Schema still accepts every message an old one accepted: backward
compatibility as a schema registry's BACKWARD mode checks it, so that a consumer that
upgrades to the new schema reads every message written under the old one.

For the subset of JSON Schema (draft 2020-12) that pydantic writes: `type`, `enum`,
`const`, `properties`, `required`, `additionalProperties`, `items`, `anyOf`, `$ref` into
`$defs`, numeric bounds, string lengths, `pattern` and `format`. Where a change is not
plainly a widening (a new pattern, a keyword outside the subset), it is reported: a
reviewer decides, and a breaking change is a new major version (docs/schemas.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["breaking_changes", "major_version"]

# Keywords that say what a message may be; the others (title, description, default,
# examples, $id, $schema) only document it.
_ANNOTATIONS = {"title", "description", "default", "examples", "$id", "$schema", "$defs"}
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")
_KNOWN = {
    *_ANNOTATIONS,
    *_LOWER,
    *_UPPER,
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
    "$ref",
    "pattern",
    "format",
}


def major_version(schema: Mapping[str, Any]) -> int:
    """The major version its `$id` names (`.../v2/name.json`); 1 for an `$id` without one."""
    for part in str(schema.get("$id", "")).split("/"):
        if part.startswith("v") and part[1:].isdigit():
            return int(part[1:])
    return 1


def breaking_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What a message valid under `old` may be that `new` rejects, one line per place
    (empty: `new` accepts all that `old` did)."""
    found: list[str] = []
    _compare(_Side(old), old, _Side(new), new, "$", found)
    return found


class _Side:
    """One schema document, for resolving its `$ref`s."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.defs: Mapping[str, Any] = root.get("$defs", {})

    def resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        seen = 0
        while "$ref" in node and seen < 32:
            name = str(node["$ref"]).removeprefix("#/$defs/")
            node = {**self.defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
            seen += 1
        return node


def _types(node: Mapping[str, Any]) -> set[str] | None:
    kind = node.get("type")
    if kind is None:
        return None
    return {kind} if isinstance(kind, str) else set(kind)


def _values(node: Mapping[str, Any]) -> list[Any] | None:
    """The only values it allows (`enum`, `const`), or None."""
    if "const" in node:
        return [node["const"]]
    if "enum" in node:
        return list(node["enum"])
    return None


def _compare(
    old_side: _Side,
    old: Mapping[str, Any],
    new_side: _Side,
    new: Mapping[str, Any],
    at: str,
    found: list[str],
) -> None:
    old, new = old_side.resolve(old), new_side.resolve(new)
    if "anyOf" in new:
        # Each branch of old (or old itself) must fit one branch of new.
        for i, branch in enumerate(old.get("anyOf", [old])):
            trials = []
            for option in new["anyOf"]:
                trial: list[str] = []
                _compare(old_side, branch, new_side, option, f"{at}|{i}", trial)
                trials.append(trial)
            if all(trials):
                found.append(f"{at}: no branch of the new anyOf takes {_short(branch)}")
        return
    if "anyOf" in old:
        for i, branch in enumerate(old["anyOf"]):
            _compare(old_side, branch, new_side, new, f"{at}|{i}", found)
        return
    unknown = set(new) - _KNOWN
    if unknown:
        found.append(f"{at}: keywords outside what this check knows: {sorted(unknown)}")
    _compare_values(old, new, at, found)
    _compare_bounds(old, new, at, found)
    found.extend(
        f"{at}: {keyword} {new[keyword]!r} where it was {old.get(keyword)!r}"
        for keyword in ("pattern", "format")
        if keyword in new and new.get(keyword) != old.get(keyword)
    )
    if "properties" in new or "properties" in old or "required" in new:
        _compare_objects(old_side, old, new_side, new, at, found)
    if "items" in new:
        if "items" in old:
            _compare(old_side, old["items"], new_side, new["items"], f"{at}[]", found)
        elif _types(old) is None or "array" in (_types(old) or set()):
            found.append(f"{at}: items now constrained")


def _compare_values(old: Mapping[str, Any], new: Mapping[str, Any], at: str, found: list[str]) -> None:
    old_types, new_types = _types(old), _types(new)
    old_values, new_values = _values(old), _values(new)
    if new_types is not None:
        if old_types is None and old_values is None:
            found.append(f"{at}: now only {sorted(new_types)}")
        elif old_types is not None and not _types_fit(old_types, new_types):
            found.append(f"{at}: type {sorted(new_types)} where it was {sorted(old_types)}")
        elif old_types is None and old_values is not None:
            lost = [value for value in old_values if not _type_takes(new_types, value)]
            if lost:
                found.append(f"{at}: type {sorted(new_types)} rejects {lost}")
    if new_values is not None:
        if old_values is None:
            found.append(f"{at}: now only the values {new_values}")
        else:
            lost = [value for value in old_values if value not in new_values]
            if lost:
                found.append(f"{at}: values {lost} no longer allowed")


def _types_fit(old: set[str], new: set[str]) -> bool:
    return all(kind in new or (kind == "integer" and "number" in new) for kind in old)


def _type_takes(types: set[str], value: Any) -> bool:
    kinds = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        type(None): "null",
        list: "array",
        dict: "object",
    }
    kind = kinds.get(type(value), "")
    return kind in types or (kind == "integer" and "number" in types)


def _compare_bounds(old: Mapping[str, Any], new: Mapping[str, Any], at: str, found: list[str]) -> None:
    found.extend(
        f"{at}: {keyword} {new[keyword]} where it was {old.get(keyword)}"
        for keyword in _LOWER
        if keyword in new and (keyword not in old or new[keyword] > old[keyword])
    )
    found.extend(
        f"{at}: {keyword} {new[keyword]} where it was {old.get(keyword)}"
        for keyword in _UPPER
        if keyword in new and (keyword not in old or new[keyword] < old[keyword])
    )


def _compare_objects(
    old_side: _Side,
    old: Mapping[str, Any],
    new_side: _Side,
    new: Mapping[str, Any],
    at: str,
    found: list[str],
) -> None:
    old_props: Mapping[str, Any] = old.get("properties", {})
    new_props: Mapping[str, Any] = new.get("properties", {})
    old_required = set(old.get("required", []))
    found.extend(f"{at}.{name}: now required" for name in sorted(set(new.get("required", [])) - old_required))
    closed = new.get("additionalProperties") is False
    if closed and old.get("additionalProperties") is not False:
        found.append(f"{at}: no longer takes other properties")
    for name, old_prop in old_props.items():
        if name in new_props:
            _compare(old_side, old_prop, new_side, new_props[name], f"{at}.{name}", found)
        elif closed:
            found.append(f"{at}.{name}: removed, and other properties are refused")


def _short(node: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in node.items() if k not in _ANNOTATIONS}
    text = repr(shown)
    return text if len(text) <= 80 else text[:77] + "..."
