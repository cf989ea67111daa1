"""The contract in the repository (docs/SPEC.md) is the contract, and the README points at it."""

from __future__ import annotations

import re

import pytest

from tests.fixtures.conformance import ROOT

DOCS_SPEC = ROOT / "docs" / "SPEC.md"
SHARED_SPEC = ROOT.parent / "shared" / "SPEC.md"


@pytest.mark.skipif(not SHARED_SPEC.exists(), reason="no shared contract beside this checkout")
def test_the_repository_carries_the_shared_contract_unchanged() -> None:
    # Beside the checkout the shared contract is the source; a change to it must land here
    # too (copy it to docs/SPEC.md), or producers and consumers read an old contract.
    assert DOCS_SPEC.read_text(encoding="utf-8") == SHARED_SPEC.read_text(encoding="utf-8")


def test_the_readme_links_the_contract_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#]*SPEC\.md)[^)]*\)", readme)
    assert links, "the README links SPEC.md"
    assert all(link == "docs/SPEC.md" for link in links), links
    # Every section the README points into exists in the contract.
    headings = {
        re.sub(r"[^a-z0-9 _-]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in DOCS_SPEC.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for anchor in re.findall(r"\]\(docs/SPEC\.md#([^)]+)\)", readme):
        assert anchor in headings, anchor


def test_the_architecture_page_names_every_room_and_module_of_stream() -> None:
    # The map a developer starts from (docs/architecture.md) stays the map of the code.
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    stream = ROOT / "stream"
    missing = [
        path.relative_to(stream).as_posix()
        for path in sorted(stream.rglob("*.py"))
        if path.name != "__init__.py" and path.name not in page
    ]
    missing += [
        folder.relative_to(stream).as_posix() + "/"
        for folder in sorted(stream.rglob("*"))
        if folder.is_dir() and folder.name not in {"__pycache__", "assets"} and f"{folder.name}/" not in page
    ]
    assert not missing, missing
