"""`journey tail` and `journey topics`: reading journey's topics and keeping them right."""

from __future__ import annotations

import asyncio
import sys

import click
import orjson

from cli.common import UserError, as_text, create_topics_now, kafka_options, load_settings, user_errors

__all__ = ["tail", "topics"]


@click.command()
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
    from stream.kafka.reading import TopicMissing, read_topic  # noqa: PLC0415
    from stream.kafka.topics import TopicNames  # noqa: PLC0415

    settings = load_settings()
    name = TopicNames(settings.topic_prefix, settings.app_id).public(topic)
    keep_following = (not from_beginning) if follow is None else follow
    wanted = key.encode() if key is not None else None
    out = sys.stdout.buffer
    if table and topic != "ppp-updates":
        raise UserError("--table is for ppp-updates")

    async def run_table() -> None:
        import time  # noqa: PLC0415

        from cli.scoreboard import Scoreboard  # noqa: PLC0415

        board = Scoreboard()
        live = sys.stdout.isatty()
        shown_at = 0.0
        # --table reads the topic from the start: the ranking needs every customer's latest score.
        async for record in read_topic(
            kafka_options(settings), name, from_beginning=True, follow=keep_following
        ):
            if record.value is None:
                board.erase(record.key.decode("utf-8", "replace"))
            else:
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
                line = orjson.dumps({"key": as_text(record.key), "value": as_text(record.value)})
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


@click.group()
def topics() -> None:
    """Create or check journey's topics on the broker in JOURNEY_BROKER."""


@topics.command("create")
@user_errors
def topics_create() -> None:
    """Create the missing topics (JOURNEY_PARTITIONS, JOURNEY_REPLICATION_FACTOR; ppp-updates
    and the changelogs compacted), then check them all."""
    from stream.kafka.topics import TopicNames  # noqa: PLC0415

    settings = load_settings()
    created = create_topics_now(settings)
    for name in created:
        click.echo(f"created {name}")
    total = len(TopicNames(settings.topic_prefix, settings.app_id).all)
    click.echo(f"{total} topics ready on {settings.broker_url} ({settings.partitions} partitions)")


@topics.command("check")
@user_errors
def topics_check() -> None:
    """Check that every topic exists and the co-partitioned ones agree on partitions (exit 1 if not)."""
    from stream.kafka.admin import verify_topics  # noqa: PLC0415
    from stream.kafka.topics import TopicNames  # noqa: PLC0415

    settings = load_settings()
    names = TopicNames(settings.topic_prefix, settings.app_id)
    partitions = asyncio.run(verify_topics(kafka_options(settings), names))
    click.echo(f"{len(names.all)} topics ok on {settings.broker_url}, {partitions} partitions each")
