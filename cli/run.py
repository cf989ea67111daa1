"""`journey up` and `journey worker`: running the system."""

from __future__ import annotations

import asyncio
import os
import sys
import webbrowser
from typing import Any

import click

from cli.common import UserError, create_topics_now, load_settings, self_command, stop_on_sigterm, user_errors

__all__ = ["up", "worker"]


def has_screen() -> bool:
    """Whether a graphical browser can open here (without one, Python's webbrowser would
    start a text browser in this terminal, over the demo's output)."""
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def open_when_ready(worker: Any, url: str) -> None:
    """Open `url` in the user's browser once the worker's web server answers."""

    @worker.app.task
    async def open_the_page() -> None:
        await asyncio.sleep(1.0)  # the web server starts with the app's other services
        if not await asyncio.to_thread(webbrowser.open, url):
            click.echo(f"open {url} in a browser to see the journey")


@click.command()
@click.option("--demo", is_flag=True, help="Also stream simulated journeys into the system and show updates.")
@click.option(
    "--rate", default=20.0, show_default=True, type=click.FloatRange(min=0.1), help="Demo events per second."
)
@click.option("--seed", default=7, show_default=True, help="Seed of the demo simulator.")
@click.option(
    "--open/--no-open",
    "open_page",
    default=None,
    help="Open the journey page in a browser once the worker answers "
    "(default: with --demo, where there is a screen).",
)
@user_errors
def up(demo: bool, rate: float, seed: int, open_page: bool | None) -> None:
    """Run the whole system on this machine: broker (embedded unless JOURNEY_BROKER is set),
    topics and one worker with its HTTP interface. Stop with Ctrl-C or SIGTERM."""
    from stream.brokers.embedded import EmbeddedBroker  # noqa: PLC0415
    from stream.worker import Worker, run_worker  # noqa: PLC0415

    settings = load_settings()
    stop_on_sigterm()
    broker: EmbeddedBroker | None = None
    try:
        if settings.broker is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            broker = EmbeddedBroker(settings.embedded_port, log_path=settings.data_dir / "broker.log")
            click.echo(f"starting the embedded broker on 127.0.0.1:{settings.embedded_port} ...")
            broker.start()
            settings = settings.model_copy(update={"broker": broker.url})
        created = create_topics_now(settings)
        made = f"{len(created)} topics created, {settings.partitions} partitions"
        click.echo(f"broker   {settings.broker_url}  ({made})")
        click.echo(f"page     {settings.web_url}/   <- open this: the journey, live")
        click.echo(f"worker   {settings.web_url}/customers/<customer_id>")
        click.echo(f"impact   {settings.web_url}/impact/campaign   ({self_command()} impact campaign)")
        click.echo(f"health   {settings.web_url}/health")
        click.echo(f"metrics  {settings.web_url}/metrics")
        click.echo(
            f"scores   {self_command()} tail ppp-updates --follow   (links: referral-links, rejects: dead-letters)"
        )
        # Open the page by default only for the demo, and only where a screen can show it.
        opens = bool(open_page) or (open_page is None and demo and has_screen())
        if demo:
            from stream.clients.demo import add_demo  # noqa: PLC0415

            click.echo(
                f"demo     streaming simulated journeys at {rate:g} events/s (customer ids demo-NNNNNN)"
            )
            click.echo(
                f"         four campaigns; after a minute the page (or `{self_command()} impact campaign`) "
                "shows which one converts but satisfies less"
            )
            click.echo("press Ctrl-C to stop everything")

        def extend(worker: Worker) -> None:
            if demo:
                add_demo(worker, settings, rate=rate, seed=seed)
            if opens:
                open_when_ready(worker, f"{settings.web_url}/")

        run_worker(settings, extend=extend, default_log_level="warning")
    finally:
        if broker is not None:
            broker.stop()
            click.echo("embedded broker stopped")


@click.command()
@user_errors
def worker() -> None:
    """Run one worker against the broker in JOURNEY_BROKER; start more for more throughput."""
    from stream.worker import run_worker  # noqa: PLC0415

    settings = load_settings()
    if settings.broker is None:
        raise UserError("JOURNEY_BROKER is not set (e.g. kafka://kafka-1:9092,kafka-2:9092)")
    stop_on_sigterm()
    run_worker(settings)
