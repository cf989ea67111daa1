"""`journey up` and `journey worker`: running the system."""

from __future__ import annotations

from collections.abc import Callable

import click

from cli.common import UserError, create_topics_now, load_settings, self_command, stop_on_sigterm, user_errors

__all__ = ["up", "worker"]


@click.command()
@click.option("--demo", is_flag=True, help="Also stream simulated journeys into the system and show updates.")
@click.option(
    "--rate", default=20.0, show_default=True, type=click.FloatRange(min=0.1), help="Demo events per second."
)
@click.option("--seed", default=7, show_default=True, help="Seed of the demo simulator.")
@user_errors
def up(demo: bool, rate: float, seed: int) -> None:
    """Run the whole system on this machine: broker (embedded unless JOURNEY_BROKER is set),
    topics and one worker with its HTTP interface. Stop with Ctrl-C or SIGTERM."""
    from stream.broker import EmbeddedBroker  # noqa: PLC0415
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
        extend: Callable[[Worker], None] | None = None
        if demo:
            from stream.demo import add_demo  # noqa: PLC0415

            click.echo(
                f"demo     streaming simulated journeys at {rate:g} events/s (customer ids demo-NNNNNN)"
            )
            click.echo(
                f"         four campaigns; after a minute the page (or `{self_command()} impact campaign`) "
                "shows which one converts but satisfies less"
            )
            click.echo("press Ctrl-C to stop everything")

            def extend(worker: Worker) -> None:
                add_demo(worker, settings, rate=rate, seed=seed)

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
