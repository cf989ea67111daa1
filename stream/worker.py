"""Assembling and running one worker: topics checked, app, pipeline, HTTP, timers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import faust

from journey.collector import tune_for_throughput
from journey.settings import Settings
from stream.app import create_app
from stream.kafka.admin import verify_topics
from stream.kafka.batching import JourneyApp
from stream.kafka.connection import kafka_options
from stream.kafka.idempotence import choose_idempotence
from stream.kafka.topics import TopicNames
from stream.kafka.transactions import choose_exactly_once, install_coordinator_retries, install_read_committed
from stream.processing.pipeline import Pipeline
from stream.serving.impact_view import ImpactView
from stream.serving.lag import register_lag_timer
from stream.serving.leaders import LeadersView, register_leaders_timer
from stream.serving.metrics import JourneyMetrics
from stream.serving.web import register_views

__all__ = ["IMPACT_VIEW_WAIT_MS", "Worker", "build_worker", "run_worker"]

IMPACT_VIEW_WAIT_MS = 100


@dataclass(frozen=True, slots=True)
class Worker:
    app: JourneyApp
    pipeline: Pipeline
    metrics: JourneyMetrics
    impact: ImpactView
    leaders: LeadersView


def build_worker(
    settings: Settings,
    *,
    partitions: int,
    metrics: JourneyMetrics | None = None,
    idempotent: bool = False,
    exactly_once: bool = False,
) -> Worker:
    app = create_app(settings, partitions=partitions, idempotent=idempotent, exactly_once=exactly_once)
    metrics = metrics or JourneyMetrics()
    pipeline = Pipeline(app, settings, metrics, partitions=partitions)
    names = TopicNames(settings.topic_prefix, settings.app_id)
    impact = ImpactView()
    leaders = LeadersView()
    register_views(app, pipeline.customers, metrics, impact, leaders, settings.web_token, pipeline.persons)
    # A fetch waits at the broker for this long when nothing is new (the embedded broker
    # waits it out even when something is): how stale an answer can be.
    views = {**kafka_options(settings), "fetch_max_wait_ms": IMPACT_VIEW_WAIT_MS}

    @app.task
    async def follow_impact() -> None:
        await impact.follow(views, names.impact)

    @app.task
    async def follow_leaders() -> None:
        await leaders.follow(views, names.leaders)

    register_leaders_timer(app, pipeline.leaders, {*names.inputs, names.rekeyed}, names.leaders)

    register_lag_timer(
        app,
        metrics,
        {*names.inputs, names.erasures, names.rekeyed},
        pipeline.customers,
        settings.lag_interval,
    )
    return Worker(app, pipeline, metrics, impact, leaders)


def run_worker(
    settings: Settings, *, extend: Callable[[Worker], None] | None = None, default_log_level: str = "info"
) -> None:
    """Run until SIGINT or SIGTERM. Raises TopicsError before starting if topics are wrong."""
    # The CLI quiets the Kafka client for one-shot commands; a worker's log wants its
    # warnings, but not its per-frame debug records, which cost 5% of a busy worker's time.
    level = (settings.log_level or default_log_level).upper()
    chatter = logging.getLogger("aiokafka")
    chatter.setLevel(max(logging.INFO, logging.getLevelName(level)))
    chatter.propagate = True  # the CLI keeps one-shot commands quiet (cli/main.py)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    names = TopicNames(settings.topic_prefix, settings.app_id)
    partitions = loop.run_until_complete(verify_topics(kafka_options(settings), names))
    idempotent = loop.run_until_complete(choose_idempotence(settings.idempotence, kafka_options(settings)))
    logging.getLogger(__name__).info(
        "producer %s (JOURNEY_IDEMPOTENCE=%s)",
        "idempotent: a retried send is written once" if idempotent else "not idempotent",
        settings.idempotence,
    )
    exactly_once = loop.run_until_complete(
        choose_exactly_once(
            settings.exactly_once,
            idempotent,
            kafka_options(settings),
            probe_prefix=f"{settings.topic_prefix}{settings.app_id}-probe-",
        )
    )
    logging.getLogger(__name__).info(
        "%s (JOURNEY_EXACTLY_ONCE=%s)",
        f"exactly-once: transactions as {settings.transactional_id}" if exactly_once else "at-least-once",
        settings.exactly_once,
    )
    if exactly_once:
        install_read_committed()
        install_coordinator_retries()
    worker = build_worker(settings, partitions=partitions, idempotent=idempotent, exactly_once=exactly_once)
    if extend is not None:
        extend(worker)
    tune_for_throughput()
    runner = faust.Worker(
        worker.app,
        loop=loop,
        loglevel=level,
        quiet=True,
        redirect_stdouts=False,
    )
    if not runner.stdout.isatty():
        # Faust's start-up spinner writes cursor escapes (ESC[?25l, ESC[?25h) even where no
        # terminal reads them: a log (`make demo > log`, a container's stdout) keeps them.
        runner.spinner = None
    # mode's Worker stops cleanly on SIGINT/SIGTERM and then exits through SystemExit.
    with contextlib.suppress(SystemExit):
        runner.execute_from_commandline()
