"""The picture of imports (docs/architecture.md): `cli` above `stream` above `journey` above
`schemas`, and inside `stream` each room imports only the rooms below it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lowest first; a module's level is that of the longest prefix naming it. Inside
# `processing`, the protocols (tables, identity's merger, the erasers) sit below the batch
# and the customers' cache, the handlers above those, and the pipeline's dispatcher on top.
LEVELS: dict[str, int] = {
    "schemas": 0,
    "journey": 1,
    "stream.kafka": 2,
    "stream.brokers": 2,
    "stream.serving": 3,
    "stream.processing.codecs": 4,
    "stream.processing.stores": 4,
    "stream.processing.identity.merging": 5,
    "stream.processing.erasure.eraser": 5,
    "stream.processing.erasure.persons": 6,
    "stream.processing.batch": 7,
    "stream.processing.dead_letters": 8,
    "stream.processing.customers": 8,
    # The handlers, one room each: they may share the batch and the customers, not each other.
    "stream.processing": 9,
    "stream.processing.pipeline": 10,
    "stream.app": 11,
    "stream.worker": 11,
    "stream.clients": 12,
    "cli": 13,
}


HANDLERS = LEVELS["stream.processing"]


def level(module: str) -> int | None:
    named = [prefix for prefix in LEVELS if module == prefix or module.startswith(prefix + ".")]
    return LEVELS[max(named, key=len)] if named else None


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_runs_back_up() -> None:
    upward = []
    for package in ("schemas", "journey", "stream", "cli"):
        for path in sorted((ROOT / package).rglob("*.py")):
            own = module_of(path)
            mine = level(own) if own != "stream" else LEVELS["stream.kafka"]
            assert mine is not None, own
            for imported in imports(path):
                theirs = level(imported)
                if theirs is None or imported == own or imported.startswith(own + "."):
                    continue
                # A handler (level HANDLERS) imports no other handler: each kind's path is its own.
                if theirs > mine or theirs == mine == HANDLERS:
                    upward.append(f"{own} imports {imported}")
    assert not upward, "\n".join(upward)


def test_every_module_has_a_room() -> None:
    # A module straight under stream/ other than the two that assemble a worker has no room.
    loose = {p.stem for p in (ROOT / "stream").glob("*.py")} - {"__init__", "app", "worker"}
    assert not loose
