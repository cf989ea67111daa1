"""The Faust application, configured from `Settings` (the topics, tables and batch handlers: see `stream.processing.pipeline`)."""

from __future__ import annotations

from journey.settings import Settings
from stream.kafka.batching import JourneyApp
from stream.kafka.connection import faust_credentials
from stream.kafka.fetching import install_fetch_wait
from stream.kafka.offsets import install_end_offsets_probe
from stream.kafka.silence import install_answer_clock
from stream.processing.codecs import register_codecs
from stream.serving.web.tls import web_tls_context

__all__ = ["PRODUCER_BATCH_BYTES", "create_app"]

# A drained backlog's batch writes megabytes of states and updates; in record batches of
# Faust's 16 KB default that was a few hundred batches a handled batch. 256 KB (within
# Kafka's default 1 MB message.max.bytes) cut the worker's CPU per event by about a tenth
# (docs/benchmarks.md); a light load's batches stay small.
PRODUCER_BATCH_BYTES = 262_144


def create_app(
    settings: Settings, *, partitions: int, idempotent: bool = False, exactly_once: bool = False
) -> JourneyApp:
    """A Faust app for one worker; `partitions` is the topics' actual partition count;
    `idempotent`: whether its producer is (`stream.kafka.idempotence`); `exactly_once`: whether it
    commits in Kafka transactions (`stream.kafka.transactions`)."""
    register_codecs()
    install_end_offsets_probe()
    install_fetch_wait(settings.fetch_max_wait_ms)
    install_answer_clock()
    return JourneyApp(
        f"{settings.topic_prefix}{settings.app_id}",
        idempotent_producer=idempotent or exactly_once,
        transactional_id=settings.transactional_id if exactly_once else None,
        broker=settings.broker_url,
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        autodiscover=False,
        datadir=str(settings.data_dir),
        topic_partitions=partitions,
        topic_replication_factor=settings.replication_factor,
        # `journey topics create` makes every topic, and a worker checks them at start. Left
        # to Faust, a worker asked the controller it last knew of to create them at every
        # start and exited when that broker was the one down (seen on three Kafka nodes);
        # its leader topic serves only `on_leader` timers, which journey has none of.
        topic_allow_declare=False,
        topic_disable_leader=True,
        # Effects are made exactly-once by event_id dedupe and versioned outputs; where the
        # broker runs transactions, journey's own consumer commits in them (Faust's
        # exactly_once mode keeps a producer per partition and cannot send record batches).
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        # Faust's 60 s default session timeout means half a minute to join or to notice a
        # dead worker; these make both take seconds.
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        # In transactions a commit is what makes outputs visible to read_committed readers:
        # every tenth of a second, as Kafka Streams does under exactly-once.
        broker_commit_interval=0.1 if exactly_once else 1.0,
        # Bounds what one fetch hands the batch handler (stream.kafka.batching): unbounded, a
        # backlog came as 29,000 messages in one batch, two seconds without a fetch.
        broker_max_poll_records=settings.max_poll_records,
        web_enabled=True,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_ssl_context=web_tls_context(settings),
        canonical_url=settings.web_url,
        # Partitions recover from the changelog before their events are handled.
        table_standby_replicas=1,
        # Every record ready at once: what is queued together leaves in one request (see
        # `ShareJoins.handle`); while a request is in flight the next one fills up anyway.
        producer_linger_ms=0,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
    )
