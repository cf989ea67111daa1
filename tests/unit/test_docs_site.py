"""The docs site: built strictly, and its reference names everything the code has. The
generated tables (settings, metrics, event fields, the CLI) hold by construction and are
checked here all the same; the hand-written HTTP page is checked against the routes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click

from cli.main import cli
from docs.hooks.reference import event_fields, metrics_table, on_page_markdown
from schemas.export import SCHEMAS, schema_of
from stream.serving.metrics import JourneyMetrics
from tests.fixtures.conformance import ROOT

DOCS = ROOT / "docs"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    # A broken link, a missing page or an anchor that is not there fails the build.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--quiet",
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    cli_page = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    for name, command in cli.commands.items():
        assert f"journey {name}" in cli_page, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.opts[-1] in cli_page or param.opts[0] in cli_page, (name, param.opts)


def test_every_page_of_the_docs_folder_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages == set(re.findall(r": ([\w/-]+\.md)$", nav, re.MULTILINE))


def test_the_http_page_names_every_route() -> None:
    page = (DOCS / "reference" / "http.md").read_text()
    routes = set()
    for source in (ROOT / "stream" / "serving").rglob("*.py"):
        routes |= set(re.findall(r"""\.page\(\s*["']([^"']+)["']""", source.read_text()))
    assert routes, "routes found"
    # `{key:.+}` is the router's pattern for a key with slashes; the page writes `{key}`.
    missing = [
        route
        for route in routes
        if f"`GET {re.sub(r':[^}]+', '', route)}"
        not in page.replace("`GET /signin`, `POST /signin`", "`GET /signin`")
    ]
    assert not missing, missing


def test_the_metrics_page_names_every_metric() -> None:
    table = metrics_table()
    registry = JourneyMetrics().registry
    for name in {sample.name for metric in registry.collect() for sample in metric.samples} | {
        collector._name for collector in registry._collector_to_names
    }:
        base = re.sub(r"_(total|bucket|count|sum|created)$", "", name)
        assert f"`{base}" in table, name
    assert "<!-- generated: metrics -->" in (DOCS / "reference" / "metrics.md").read_text()


def test_the_event_fields_page_names_every_field_of_every_schema() -> None:
    fields = event_fields()
    for name in SCHEMAS:
        for field in schema_of(name).get("properties", {}):
            assert f"| `{field}` |" in fields, (name, field)
    page = on_page_markdown((DOCS / "reference" / "events.md").read_text())
    assert "## touchpoint" in page and "## ppp-update" in page


def test_no_page_narrates_numbered_periods_of_work() -> None:
    # What holds now, dated where the date matters: never "the third session" or "this session".
    pattern = re.compile(
        r"\b(session|period of work|sprint)\s*\d|\b(\d+(st|nd|rd|th)|this) session\b", re.IGNORECASE
    )
    texts = [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS.rglob("*.md")]
    found = [
        f"{path.name}: {line}"
        for path in texts
        for line in path.read_text().splitlines()
        if pattern.search(line)
    ]
    assert not found, found
