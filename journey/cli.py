"""The `journey` command line. Every failure a user can cause ends in one line and exit 1 or 2."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import orjson
from pydantic import ValidationError

from journey.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


class UserError(click.ClickException):
    """A problem the user can fix: printed as one line, exit 1."""


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"journey: error: {message}", err=True)
    sys.exit(code)


def load_settings() -> Settings:
    try:
        settings = Settings()
        _ = settings.rates  # a broken FX file should stop us here, not at the first purchase
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["loc"]:
            message = "JOURNEY_" + "_".join(str(p) for p in first["loc"]).upper() + ": " + message
        raise UserError(message) from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return settings


def kafka_options(settings: Settings) -> dict[str, Any]:
    from stream.connection import kafka_options as options  # noqa: PLC0415  # keep --help fast

    return options(settings)


def _self_command() -> str:
    """How the user can run journey again: `.venv/bin/journey` when that is how it started."""
    return sys.argv[0] if sys.argv[0].endswith("journey") else "journey"


def _create_topics(settings: Settings) -> list[str]:
    """Create what is missing of journey's topics; the names created."""
    from stream.admin import create_topics  # noqa: PLC0415
    from stream.topics import TopicNames  # noqa: PLC0415

    names = TopicNames(settings.topic_prefix, settings.app_id)
    return asyncio.run(
        create_topics(
            kafka_options(settings),
            names,
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
        )
    )


def user_errors(fun: F) -> F:
    """Turn the errors a user can cause into one-line messages instead of tracebacks."""

    @wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from aiokafka.errors import KafkaConnectionError, KafkaError  # noqa: PLC0415  # keep --help fast

        from journey.broker import BrokerError  # noqa: PLC0415
        from stream.admin import TopicsError  # noqa: PLC0415
        from stream.connection import KafkaSetupError  # noqa: PLC0415

        try:
            return fun(*args, **kwargs)
        except (BrokerError, TopicsError, KafkaSetupError) as exc:
            raise UserError(str(exc)) from None
        except KafkaConnectionError:
            raise UserError(f"cannot reach the broker at {load_settings().broker_url}") from None
        except KafkaError as exc:
            raise UserError(f"broker error: {exc}") from None
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise UserError(f"{exc.strerror or exc}{':' if where else ''}{where}") from None

    return wrapper  # type: ignore[return-value]  # wraps keeps the signature


def _stop_on_sigterm() -> None:
    # Until Faust installs its own handlers, SIGTERM must still unwind through `finally`
    # so that the embedded broker is stopped, not orphaned.
    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="journey")
def cli() -> None:
    """journey: customer journeys in, PPP = CSAT x CLTV out, on Kafka.

    Configuration comes from JOURNEY_* environment variables (see the README).
    """


@cli.command()
@click.option("--demo", is_flag=True, help="Also stream simulated journeys into the system and show updates.")
@click.option(
    "--rate", default=20.0, show_default=True, type=click.FloatRange(min=0.1), help="Demo events per second."
)
@click.option("--seed", default=7, show_default=True, help="Seed of the demo simulator.")
@user_errors
def up(demo: bool, rate: float, seed: int) -> None:
    """Run the whole system on this machine: broker (embedded unless JOURNEY_BROKER is set),
    topics and one worker with its HTTP interface. Stop with Ctrl-C or SIGTERM."""
    from journey.broker import EmbeddedBroker  # noqa: PLC0415
    from stream.worker import Worker, run_worker  # noqa: PLC0415

    settings = load_settings()
    _stop_on_sigterm()
    broker: EmbeddedBroker | None = None
    try:
        if settings.broker is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            broker = EmbeddedBroker(settings.embedded_port, log_path=settings.data_dir / "broker.log")
            click.echo(f"starting the embedded broker on 127.0.0.1:{settings.embedded_port} ...")
            broker.start()
            settings = settings.model_copy(update={"broker": broker.url})
        created = _create_topics(settings)
        made = f"{len(created)} topics created, {settings.partitions} partitions"
        click.echo(f"broker   {settings.broker_url}  ({made})")
        click.echo(f"worker   {settings.web_url}/customers/<customer_id>")
        click.echo(f"health   {settings.web_url}/health")
        click.echo(f"metrics  {settings.web_url}/metrics")
        click.echo(
            f"scores   {_self_command()} tail ppp-updates --follow   (links: referral-links, rejects: dead-letters)"
        )
        extend: Callable[[Worker], None] | None = None
        if demo:
            from stream.demo import add_demo  # noqa: PLC0415

            click.echo(
                f"demo     streaming simulated journeys at {rate:g} events/s (customer ids demo-NNNNNN)"
            )
            click.echo("press Ctrl-C to stop everything")

            def extend(worker: Worker) -> None:
                add_demo(worker, settings, rate=rate, seed=seed)

        run_worker(settings, extend=extend, default_log_level="warning")
    finally:
        if broker is not None:
            broker.stop()
            click.echo("embedded broker stopped")


@cli.command()
@user_errors
def worker() -> None:
    """Run one worker against the broker in JOURNEY_BROKER; start more for more throughput."""
    from stream.worker import run_worker  # noqa: PLC0415

    settings = load_settings()
    if settings.broker is None:
        raise UserError("JOURNEY_BROKER is not set (e.g. kafka://kafka-1:9092,kafka-2:9092)")
    _stop_on_sigterm()
    run_worker(settings)


@cli.command()
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
@user_errors
def replay(file: Path, strict: bool, jobs: int, impact: bool) -> None:
    """Print the final state of every customer from a JSON-lines FILE, without any broker.

    One JSON object per customer, sorted by customer_id; with --impact, one per impact
    entry, sorted by dimension then key. Invalid lines are reported on stderr and skipped
    (as the worker sends them to dead-letters)."""
    from journey.replay import default_jobs, replay_file  # noqa: PLC0415

    settings = load_settings()
    result = replay_file(
        file,
        settings.rules,
        currencies=settings.rates,
        max_bytes=settings.max_event_bytes,
        jobs=jobs or default_jobs(),
        impact=impact,
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


@cli.command()
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
    from stream.publisher import EventPublisher  # noqa: PLC0415
    from stream.topics import TopicNames  # noqa: PLC0415

    async def run() -> int:
        async with EventPublisher(
            kafka_options(settings), TopicNames(settings.topic_prefix, settings.app_id)
        ) as pub:
            return await pub.send_paced(
                itertools.islice(events, limit), None if fast else (rate or 100.0), duration
            )

    count = asyncio.run(run())
    click.echo(f"published {count} events to {settings.broker_url}", err=True)


@cli.command()
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
    from journey.event_files import FileLine, read_event_file  # noqa: PLC0415
    from journey.progress import Progress  # noqa: PLC0415
    from stream.publisher import EventPublisher  # noqa: PLC0415
    from stream.topics import TopicNames  # noqa: PLC0415

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


@cli.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest message (default: only new ones).")
@click.option(
    "--follow/--no-follow",
    default=None,
    help="Keep waiting for new messages (default: on, unless --from-beginning).",
)
@click.option("--key", help="Only messages with this key (a customer_id for ppp-updates).")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many messages.")
@click.option("--table", is_flag=True, help="For ppp-updates: a live, refreshing top-N of customers by PPP.")
@click.option("--top", default=15, show_default=True, type=click.IntRange(min=1), help="Rows of --table.")
@user_errors
def tail(
    topic: str,
    from_beginning: bool,
    follow: bool | None,
    key: str | None,
    limit: int | None,
    table: bool,
    top: int,
) -> None:
    """Print the messages of TOPIC (e.g. ppp-updates, referral-links, dead-letters) as JSON lines.

    TOPIC is named without JOURNEY_TOPIC_PREFIX, which is added."""
    from stream.tail import TopicMissing, read_topic  # noqa: PLC0415
    from stream.topics import TopicNames  # noqa: PLC0415

    settings = load_settings()
    name = TopicNames(settings.topic_prefix, settings.app_id).public(topic)
    keep_following = (not from_beginning) if follow is None else follow
    wanted = key.encode() if key is not None else None
    out = sys.stdout.buffer
    if table and topic != "ppp-updates":
        raise UserError("--table is for ppp-updates")

    async def run_table() -> None:
        import time  # noqa: PLC0415

        from journey.scoreboard import Scoreboard  # noqa: PLC0415

        board = Scoreboard()
        live = sys.stdout.isatty()
        shown_at = 0.0
        # --table reads the topic from the start: the ranking needs every customer's latest score.
        async for record in read_topic(
            kafka_options(settings), name, from_beginning=True, follow=keep_following
        ):
            board.add(orjson.loads(record.value))
            now = time.monotonic()
            if live and now - shown_at >= 1.0:
                shown_at = now
                click.echo("\033[H\033[2J" + board.render(top), nl=True)
        click.echo(("\033[H\033[2J" if live else "") + board.render(top))

    async def run() -> None:
        shown = 0
        async for record in read_topic(
            kafka_options(settings), name, from_beginning=from_beginning, follow=keep_following
        ):
            if wanted is not None and record.key != wanted:
                continue
            try:
                line = orjson.dumps(orjson.loads(record.value))
            except orjson.JSONDecodeError:
                line = orjson.dumps({"key": _text(record.key), "value": _text(record.value)})
            out.write(line + b"\n")
            out.flush()
            shown += 1
            if limit is not None and shown >= limit:
                return

    try:
        asyncio.run(run_table() if table else run())
    except TopicMissing:
        raise UserError(f"topic {name} does not exist on {settings.broker_url}") from None
    except BrokenPipeError:
        sys.stderr.close()  # e.g. `| head`: the reader left, which is no error


@cli.group()
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


@cli.group()
def topics() -> None:
    """Create or check journey's topics on the broker in JOURNEY_BROKER."""


@topics.command("create")
@user_errors
def topics_create() -> None:
    """Create the missing topics (JOURNEY_PARTITIONS, JOURNEY_REPLICATION_FACTOR; ppp-updates
    and the changelogs compacted), then check them all."""
    from stream.topics import TopicNames  # noqa: PLC0415

    settings = load_settings()
    created = _create_topics(settings)
    for name in created:
        click.echo(f"created {name}")
    total = len(TopicNames(settings.topic_prefix, settings.app_id).all)
    click.echo(f"{total} topics ready on {settings.broker_url} ({settings.partitions} partitions)")


@topics.command("check")
@user_errors
def topics_check() -> None:
    """Check that every topic exists and the co-partitioned ones agree on partitions (exit 1 if not)."""
    from stream.admin import verify_topics  # noqa: PLC0415
    from stream.topics import TopicNames  # noqa: PLC0415

    settings = load_settings()
    names = TopicNames(settings.topic_prefix, settings.app_id)
    partitions = asyncio.run(verify_topics(kafka_options(settings), names))
    click.echo(f"{len(names.all)} topics ok on {settings.broker_url}, {partitions} partitions each")


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def main() -> None:
    # Client commands speak for themselves in one line; the Kafka client's own connection
    # chatter would only repeat it. Workers set up their logging through Faust.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        _fail(f"{exc.format_message()}{hint}", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
