"""`journey schemas export`: the JSON Schemas for producers in other languages."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import user_errors

__all__ = ["schemas"]


@click.group()
def schemas() -> None:
    """JSON Schemas (draft 2020-12) of the events and messages, for producers in other languages."""


@schemas.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@user_errors
def schemas_export(directory: Path) -> None:
    """Write one JSON Schema file per event type and output message into DIRECTORY."""
    from schemas.export import export_schemas  # noqa: PLC0415

    for path in export_schemas(directory):
        click.echo(str(path))
