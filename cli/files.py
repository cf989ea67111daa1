"""`journey replay`, `journey simulate` and `journey publish`: event files and journeys."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
import orjson

from cli.common import UserError, kafka_options, load_settings, user_errors

__all__ = ["publish", "replay", "simulate"]


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Fail on the first invalid line instead of skipping it.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Processes to fold in, split by customer (0: one per CPU; files under 2 MB use one).",
)
@click.option(
    "--impact",
    is_flag=True,
    help="Print the impact entries (every dimension and key, with comparisons) instead of the customers.",
)
@click.option(
    "--erasures",
    "erasures_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A JSON-lines file of erasure requests: the result is as if the events they erase "
    "had never been sent.",
)
@user_errors
def replay(file: Path, strict: bool, jobs: int, impact: bool, erasures_file: Path | None) -> None:
    """Print the final state of every customer from a JSON-lines FILE, without any broker.

    One JSON object per customer, sorted by customer_id; with --impact, one per impact
    entry, sorted by dimension then key. Invalid lines are reported on stderr and skipped
    (as the worker sends them to dead-letters)."""
    from journey.event_files import read_erasure_file  # noqa: PLC0415
    from journey.replay import default_jobs, replay_file  # noqa: PLC0415

    settings = load_settings()
    requests = None
    if erasures_file is not None:
        requests, bad = read_erasure_file(erasures_file, max_bytes=settings.max_event_bytes)
        if strict and bad:
            raise UserError(f"{bad[0].path}:{bad[0].number}: {bad[0].error}")
        for line in bad:
            click.echo(f"{line.path}:{line.number}: skipped: {line.error}", err=True)
    result = replay_file(
        file,
        settings.rules,
        currencies=settings.rates,
        max_bytes=settings.max_event_bytes,
        jobs=jobs or default_jobs(),
        impact=impact,
        requests=requests,
    )
    if strict and result.invalid:
        first = result.invalid[0]
        raise UserError(f"{first.path}:{first.number}: {first.error}")
    for line in result.invalid:
        click.echo(f"{line.path}:{line.number}: skipped: {line.error}", err=True)
    out = sys.stdout.buffer
    lines = result.lines if result.impact is None else [orjson.dumps(entry) for entry in result.impact]
    out.write(b"".join(line + b"\n" for line in lines))
    out.flush()
    if result.invalid:
        click.echo(f"{len(result.invalid)} invalid lines skipped", err=True)
    if requests is not None:
        click.echo(f"{result.erased} events erased ({result.erased_ids} ids with erasure horizons)", err=True)


@click.command()
@click.option(
    "--customers", default=100, show_default=True, type=click.IntRange(min=1), help="Customers to simulate."
)
@click.option(
    "--seed", default=7, show_default=True, help="Random seed: the same seed gives the same events."
)
@click.option("--rate", type=click.FloatRange(min=0.1), help="Events per second (default 100).")
@click.option("--as-fast-as-possible", "fast", is_flag=True, help="No pacing.")
@click.option("--duration", type=click.FloatRange(min=0.1), help="Stop after this many seconds.")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write JSON lines here instead of publishing.",
)
@user_errors
def simulate(
    customers: int,
    seed: int,
    rate: float | None,
    fast: bool,
    duration: float | None,
    limit: int | None,
    out: Path | None,
) -> None:
    """Stream synthetic customer journeys (seeded, with referral chains) to the input topics."""
    import itertools  # noqa: PLC0415

    from journey.simulate import JourneySimulator  # noqa: PLC0415

    settings = load_settings()
    if rate is not None and fast:
        raise UserError("--rate and --as-fast-as-possible exclude each other")
    simulator = JourneySimulator(seed=seed, customers=customers, currencies=sorted(settings.rates.rates))
    events = simulator.events(limit)
    if out is not None:
        with out.open("wb") as handle:
            count = 0
            for event in events:
                handle.write(orjson.dumps(event) + b"\n")
                count += 1
        click.echo(f"wrote {count} events of {simulator.customers_started} customers to {out}", err=True)
        return
    from stream.clients.publisher import EventPublisher  # noqa: PLC0415
    from stream.kafka.topics import TopicNames  # noqa: PLC0415

    async def run() -> int:
        async with EventPublisher(
            kafka_options(settings), TopicNames(settings.topic_prefix, settings.app_id)
        ) as pub:
            return await pub.send_paced(
                itertools.islice(events, limit), None if fast else (rate or 100.0), duration
            )

    count = asyncio.run(run())
    click.echo(f"published {count} events to {settings.broker_url}", err=True)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--type",
    "event_type",
    type=click.Choice(["touchpoint", "purchase", "survey", "share"]),
    help="Type of events that have no `type` field or column (one file per type).",
)
@click.option("--strict", is_flag=True, help="Send nothing if any line is invalid.")
@click.option("--dry-run", is_flag=True, help="Validate and count, send nothing.")
@user_errors
def publish(files: tuple[Path, ...], event_type: str | None, strict: bool, dry_run: bool) -> None:
    """Validate and publish JSON-lines or CSV FILES of events to their topics, keyed by customer_id.

    Invalid lines are reported as FILE:LINE: reason and not sent."""
    from cli.progress import Progress  # noqa: PLC0415
    from journey.event_files import FileLine, read_event_file  # noqa: PLC0415
    from stream.clients.publisher import EventPublisher  # noqa: PLC0415
    from stream.kafka.topics import TopicNames  # noqa: PLC0415

    settings = load_settings()
    valid: list[FileLine] = []
    invalid = 0
    for path in files:
        for line in read_event_file(
            path, currencies=settings.rates, default_type=event_type, max_bytes=settings.max_event_bytes
        ):
            if line.event is None:
                invalid += 1
                click.echo(f"{line.path}:{line.number}: {line.error}", err=True)
            else:
                valid.append(line)
    if invalid and strict:
        raise UserError(f"{invalid} invalid lines, nothing sent (--strict)")
    if dry_run:
        click.echo(f"{len(valid)} valid events, {invalid} invalid; nothing sent (--dry-run)")
        return
    names = TopicNames(settings.topic_prefix, settings.app_id)

    async def send() -> dict[str, int]:
        progress = Progress(len(valid), "events")
        async with EventPublisher(kafka_options(settings), names) as publisher:
            for line in valid:
                assert line.event is not None
                await publisher.send_raw(line.event.type, line.event.customer_id, line.raw)
                progress.advance()
            await publisher.flush()
        progress.done()
        return dict(publisher.sent)

    sent = asyncio.run(send())
    summary = ", ".join(f"{topic}: {count}" for topic, count in sorted(sent.items())) or "nothing"
    total = sum(sent.values())
    click.echo(f"sent {total} events to {settings.broker_url} ({summary}); {invalid} invalid lines skipped")
