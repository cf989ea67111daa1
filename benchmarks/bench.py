"""`make bench`: journey against its ceiling, on one broker, in one run.

The broker is the embedded one (Tansu), or one Apache Kafka node with `--broker kafka`
(`make bench-kafka`): every stage runs against it, raw passthrough included.

1. raw: an aiokafka consume -> produce passthrough of the same messages (no parsing): the
   most a Python Kafka pipeline can do on this machine and broker;
2. journey: one `journey worker` process on the same messages, impact included (done when
   the last event is handled, the last link is out and the `all` impact entry is final),
   then a worker started again on the state the first run left: how long until it has its
   partitions and until it has restored its tables from their changelogs;
3. replay: `journey replay`'s work (`journey.replay.replay_file`) on a file of the same
   events, with one process and with one per CPU (the pure core, with parsing and
   validation), and the same with `--impact`;
4. saturation: what one worker handles while the latency stage's load generator runs beside
   it, offering more than (2) (issue #17: "half of saturation" means with the generator);
5. latency: produce-to-`ppp-updates` p50/p99 at a fixed offered load of half of (4), for
   the raw passthrough and for journey, each measured from a process of its own, started
   again on topics a warm-up run of it wrote, once it is ready (`serve_latency`);
6. memory: bytes per customer held, for `--customers` customers in the core's state.

Absolute numbers vary from machine to machine and run to run; the ratios are the result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition
from history import history_stage, memory_by_history  # beside this script (`python benchmarks/bench.py`)

from journey.collector import fewer_collections, tune_for_throughput
from journey.customer import CustomerState
from journey.money import load_rates
from journey.referrals import ShareJoin, apply_sighting, sighting_for
from journey.replay import default_jobs, replay_file
from journey.scoring import ScoringRules, apply_event
from journey.settings import Settings
from journey.simulate import JourneySimulator
from journey.stored import to_store
from schemas.decode import parse_event, scored
from schemas.events import Event
from stream.app import PRODUCER_BATCH_BYTES
from stream.brokers.apache import KafkaCluster
from stream.brokers.embedded import EmbeddedBroker, free_port
from stream.kafka.admin import create_topics
from stream.kafka.reading import read_topic
from stream.kafka.topics import TopicNames

Broker = EmbeddedBroker | KafkaCluster


class Address(Protocol):
    """What a pipeline needs of its broker: a broker, or a process's note of one."""

    @property
    def url(self) -> str: ...

    @property
    def bootstrap(self) -> list[str]: ...


ROOT = Path(__file__).resolve().parents[1]
RATES = ROOT / "deploy" / "fx-rates.json"
PARTITIONS = 4
# The worker's default JOURNEY_MAX_POLL_RECORDS, for the raw passthrough too: the same batches.
MAX_POLL_RECORDS = Settings.model_fields["max_poll_records"].default
# Each throughput is the best of this many runs, alternating (as timeit reports: the
# machine's noise only ever slows a run down).
THROUGHPUT_RUNS = 2
# The saturation stage offers this much more than the throughput stage's rate, and starts
# counting after this many seconds.
SATURATION_OVERLOAD = 1.25
SATURATION_WARMUP = 2.0
MIN_TIMED_SECONDS = 1.0
# The latency stage's warm-up run, before the measured one (`serve_latency`).
WARM_UP_SECONDS = 5.0


def log(message: str) -> None:
    print(message, flush=True)


def workload(count: int, *, identity: bool = True, prefix: str = "b") -> list[dict[str, Any]]:
    """The simulator's journeys; with `identity`, one customer in twenty researches under a
    device id and is identified at its first purchase (about 4% of people are merged).
    Workloads of different `prefix`es share no customer and no event."""
    currencies = sorted(load_rates(RATES, "USD").rates)
    simulator = JourneySimulator(
        seed=42,
        customers=count // 6,
        currencies=currencies,
        prefix=prefix,
        anonymous_every=20 if identity else 0,
    )
    return list(simulator.events(count))


async def produce(kafka: dict[str, Any], messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(**kafka, linger_ms=5, max_batch_size=PRODUCER_BATCH_BYTES)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_passthrough(kafka: dict[str, Any], messages: list[tuple[str, bytes, bytes]], run: int) -> float:
    """Events/s of consume -> produce with aiokafka alone, same messages, same partitions, in
    a process of its own (`--raw-throughput`), as the worker is."""
    topic = f"raw{run}-in"
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (topic, f"raw{run}-out")])
    await admin.close()
    await produce(kafka, [(topic, key, value) for _, key, value in messages])
    command = [sys.executable, __file__, "--raw-throughput", kafka["bootstrap_servers"][0], str(run)]
    result = subprocess.run([*command, str(len(messages))], capture_output=True, check=True, timeout=600)
    return float(result.stdout)


async def serve_raw_throughput(bootstrap: str, run: str, count: int) -> float:
    """The raw throughput process: `count` messages from `raw<run>-in` to `raw<run>-out`,
    each batch's sends acknowledged and its offsets committed before the next, with the
    worker's garbage-collector settings and batch sizes; events/s from the first fetched batch."""
    tune_for_throughput()
    kafka = {"bootstrap_servers": [bootstrap]}
    consumer = AIOKafkaConsumer(
        f"raw{run}-in",
        **kafka,
        group_id=f"raw{run}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=MAX_POLL_RECORDS,
    )
    producer = AIOKafkaProducer(**kafka, linger_ms=5, max_batch_size=PRODUCER_BATCH_BYTES)
    await consumer.start()
    await producer.start()
    try:
        done, started = 0, 0.0
        while done < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=MAX_POLL_RECORDS)
            if not started and batch:
                started = time.perf_counter()
            futures = [
                await producer.send(f"raw{run}-out", r.value, key=r.key) for rs in batch.values() for r in rs
            ]
            done += len(futures)
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def health(port: int) -> dict[str, Any] | None:
    """The worker's /health, None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except OSError:
        return None
    return answer


def worker_ready(port: int) -> bool:
    """Whether the worker has its partitions and has restored its tables: Faust's rebalance
    ends when recovery does, and the input waits until then."""
    answer = health(port)
    return answer is not None and bool(answer["assigned"]) and not answer["rebalancing"]


async def changelog_records(kafka: dict[str, Any], names: TopicNames) -> int:
    """Records (transaction markers included) in the changelog topics of `names`' worker."""
    consumer = AIOKafkaConsumer(**kafka)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for topic in names.changelogs for p in range(PARTITIONS)]
        ends, starts = await consumer.end_offsets(tps), await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    return sum(ends[tp] - starts[tp] for tp in tps)


async def restore(
    broker: Broker, kafka: dict[str, Any], names: TopicNames, tmp: Path
) -> tuple[int, float, float]:
    """A worker started again on the state a run left under `names`: the changelog records
    it restores, the seconds until it had its partitions, and until it was ready (its
    tables restored)."""
    records = await changelog_records(kafka, names)
    port = free_port()
    launched = time.perf_counter()
    worker = start_worker(broker, names.prefix, port, tmp)
    assigned = None
    try:
        while time.perf_counter() - launched < 600:
            answer = health(port)
            if answer is not None and answer["assigned"]:
                assigned = assigned or time.perf_counter() - launched
                if not answer["rebalancing"]:
                    return records, assigned, time.perf_counter() - launched
            await asyncio.sleep(0.05)
        raise RuntimeError("bench: a restarted worker was not ready within 600 s")
    finally:
        worker.terminate()
        worker.wait(30)


def start_worker(
    broker: Address, prefix: str, port: int, tmp: Path, settings: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A `journey worker` on `prefix`'s topics, with the bench's settings and `settings`."""
    env = {
        **os.environ,
        "JOURNEY_BROKER": broker.url,
        "JOURNEY_TOPIC_PREFIX": prefix,
        "JOURNEY_WEB_PORT": str(port),
        "JOURNEY_FX_RATES": str(RATES),
        "JOURNEY_DATA_DIR": str(tmp / prefix),
        "JOURNEY_SESSION_TIMEOUT": "6",
        "JOURNEY_LOG_LEVEL": "warning",
        **(settings or {}),
    }
    log_file = (tmp / f"{prefix}worker.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker"], env=env, stdout=log_file, stderr=log_file
    )


def parse_all(events: list[dict[str, Any]]) -> list[Event]:
    """The workload as the core sees it (validated), for the stages that need it; identify
    events fold into no state."""
    rates = load_rates(RATES, "USD").rates
    return [
        scored(parse_event(json.dumps(e).encode(), expected_type=None, currencies=rates))
        for e in events
        if e["type"] != "identify"
    ]


def expected_everyone(events: list[dict[str, Any]], tmp: Path) -> dict[str, Any]:
    """The `all` impact entry the events make (replay): a worker has summed every change
    of every customer's contribution when its `GET /impact` answers this."""
    path = tmp / "everyone.jsonl"
    path.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in events))
    rules = ScoringRules(rates=load_rates(RATES, "USD"))
    report = replay_file(path, rules, currencies=rules.rates, jobs=default_jobs(), impact=True).impact
    assert report is not None and report[0]["dimension"] == "all"
    return report[0]


class Everyone:
    """The latest `all` entry on an `impact` topic, read as it comes (10 ms fetch waits, so
    that the moment the worker publishes the final entry is seen within a sample or two)."""

    def __init__(self, kafka: dict[str, Any], topic: str) -> None:
        self.latest: dict[str, Any] = {}
        self.task = asyncio.ensure_future(self._read({**kafka, "fetch_max_wait_ms": 10}, topic))

    async def _read(self, kafka: dict[str, Any], topic: str) -> None:
        async for record in read_topic(kafka, topic, from_beginning=True, follow=True):
            if record.key == b"all/*" and record.value is not None:
                self.latest = json.loads(record.value)

    def equals(self, everyone: dict[str, Any]) -> bool:
        return all(self.latest.get(name) == everyone[name] for name in ("customers", "referred", "ppp"))

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def expected_links(parsed: list[Event]) -> int:
    """How many referral links the events make (the pure core's share join): a worker is
    done with a workload when its links are out too, not when the last event was scored."""
    joins: dict[str, ShareJoin] = {}
    links = 0
    for event in parsed:
        sighting = sighting_for(event)
        if sighting is not None:
            join = joins.setdefault(sighting["share_id"], ShareJoin(sighting["share_id"]))
            links += len(apply_sighting(join, sighting).links)
    return links


async def journey_throughput(
    broker: Broker,
    kafka: dict[str, Any],
    events: list[dict[str, Any]],
    links: int,
    everyone: dict[str, Any],
    tmp: Path,
    run: int,
) -> float:
    """Events/s of one worker from its first handled event until every event is handled,
    the `links` referral links they make are out and its `all` impact entry is `everyone`."""
    names = TopicNames(prefix=f"bench{run}.")
    await create_topics(kafka, names, partitions=PARTITIONS, replication_factor=1)
    await produce(
        kafka,
        [(names.for_type(e["type"]), e["customer_id"].encode(), json.dumps(e).encode()) for e in events],
    )
    port = free_port()
    published = Everyone(kafka, names.impact)
    worker = start_worker(broker, names.prefix, port, tmp)
    try:
        first_count, first_at, first_cpu = 0.0, 0.0, 0.0
        while True:
            count = metric(port, "journey_events_total")
            now = time.perf_counter()
            if count and not first_at:
                first_count, first_at, first_cpu = count, now, cpu_seconds(worker.pid)
            if (
                count >= len(events)
                and metric(port, "journey_referral_links_total") >= links
                and published.equals(everyone)
            ):
                if now - first_at < MIN_TIMED_SECONDS:
                    # Sampled every 50 ms and counted per handled batch (up to 5,000 events):
                    # shorter than this, the rate is mostly sampling error.
                    raise SystemExit(
                        f"bench: {len(events)} events are too few to time: the worker handled "
                        f"them in {now - first_at:.2f} s after its first sample; use more --events"
                    )
                used = cpu_seconds(worker.pid) - first_cpu
                log(f"    worker CPU {used / (count - first_count) * 1e6:.1f} us per event")
                return (count - first_count) / (now - first_at)
            await asyncio.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait(30)
        await published.stop()


class Pipeline:
    """What the latency stage measures: a process that turns the input topics' events into
    messages on `output`, each naming the event that caused it."""

    label = ""

    def __init__(self, names: TopicNames, output: str, cause_field: str) -> None:
        self.names = names
        self.output = output
        self.cause_field = cause_field

    def start(self) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def ready(self, process: subprocess.Popen[bytes]) -> bool:
        raise NotImplementedError


class JourneyPipeline(Pipeline):
    """One `journey worker`; latency is produce -> the `ppp-updates` message of the event."""

    label = "journey"

    def __init__(self, broker: Address, tmp: Path) -> None:
        names = TopicNames(prefix="latency.")
        super().__init__(names, names.ppp_updates, "cause_event_id")
        self.broker, self.tmp, self.port = broker, tmp, free_port()

    def start(self) -> subprocess.Popen[bytes]:
        return start_worker(self.broker, self.names.prefix, self.port, self.tmp)

    def ready(self, process: subprocess.Popen[bytes]) -> bool:
        return worker_ready(self.port)  # joined the group, partitions assigned, tables restored


class RawPipeline(Pipeline):
    """The baseline: an aiokafka consume -> produce passthrough in its own process (as the
    worker is), reading the same input topics with the worker's fetch wait and writing
    each message unchanged, so latency is produce -> the copy of the event."""

    label = "raw"

    def __init__(self, broker: Address, tmp: Path) -> None:
        names = TopicNames(prefix="latency-raw.")
        super().__init__(names, names.ppp_updates, "event_id")
        self.broker, self.ready_file = broker, tmp / "raw-passthrough.ready"
        self.started = False

    def start(self) -> subprocess.Popen[bytes]:
        self.ready_file.unlink(missing_ok=True)
        bootstrap = ",".join(self.broker.bootstrap)
        command = [sys.executable, __file__, "--passthrough", bootstrap, self.names.prefix]
        # Started again after the warm-up (`serve_latency`): from where that run ended.
        start = "end" if self.started else "beginning"
        self.started = True
        return subprocess.Popen([*command, str(self.ready_file), start])

    def ready(self, process: subprocess.Popen[bytes]) -> bool:
        return self.ready_file.exists()


async def serve_passthrough(bootstrap: str, prefix: str, ready_file: Path, start: str) -> None:
    """The raw pipeline's process (`--passthrough`): every input topic's message to `ppp-updates`,
    from the `start` ("beginning" or "end") of the inputs, as a worker resumes where it was."""
    names = TopicNames(prefix=prefix)
    kafka = {"bootstrap_servers": [bootstrap]}
    consumer = AIOKafkaConsumer(**kafka, auto_offset_reset="earliest", fetch_max_wait_ms=10)
    producer = AIOKafkaProducer(**kafka, linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        partitions = [TopicPartition(t, p) for t in names.inputs for p in range(PARTITIONS)]
        consumer.assign(partitions)
        if start == "end":
            await consumer.seek_to_end(*partitions)
            for partition in partitions:  # resolved now: nothing sent after `ready` is skipped
                await consumer.position(partition)
        else:
            await consumer.seek_to_beginning(*partitions)
        ready_file.touch()
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for records in batch.values():
                for record in records:
                    await producer.send(names.ppp_updates, record.value, key=record.key)
    finally:
        await consumer.stop()
        await producer.stop()


_Message = tuple[str, str, bytes, bytes]  # topic, event_id, key, value
# What `latency` measures: p50 and p99 (ms), messages, p99 per window (ms), CPU shares by
# process, seconds until the pipeline was ready.
Latency = tuple[float, float, int, list[float], dict[str, float], float]


def serialised(names: TopicNames, events: list[dict[str, Any]]) -> list[_Message]:
    """The events as the load generator sends them (serialised before the clock starts:
    it shares the machine's CPUs with what it measures)."""
    return [
        (names.for_type(e["type"]), e["event_id"], e["customer_id"].encode(), json.dumps(e).encode())
        for e in events
    ]


async def offer(
    producer: AIOKafkaProducer,
    messages: list[_Message],
    rate: float,
    sent_at: dict[str, float] | None = None,
    unmeasured: int = 0,
) -> None:
    """Send `messages` at `rate` per second, noting in `sent_at` when each after the first
    `unmeasured` was sent."""
    started = time.perf_counter()
    index = 0
    while index < len(messages):
        # Every event that is due, then a millisecond's sleep: one timer per tick, not
        # one per event, so that the load generator's own CPU stays small.
        due = min(len(messages), int((time.perf_counter() - started) * rate) + 1)
        for topic, event_id, key, value in messages[index:due]:
            if sent_at is not None and index >= unmeasured:
                sent_at[event_id] = time.perf_counter()
            await producer.send(topic, value, key=key)
            index += 1
        await asyncio.sleep(0.001)


async def saturation(
    broker: Broker,
    kafka: dict[str, Any],
    events: list[dict[str, Any]],
    rate: float,
    tmp: Path,
    *,
    linger_ms: int,
    warmup: float = 2.0,
) -> tuple[float, float]:
    """Events/s one worker handles while the load generator offers it `events` at `rate`
    (more than it can take), as in the latency stage; and the share of a CPU the load
    generator used meanwhile.

    The throughput stage times a worker draining a backlog alone; in the latency stage the
    load generator and the reader of the outputs share the two CPUs with it, so half of
    that is more than half of what the worker can do there (issue #17: its p99 grew
    through the stage). Counted from `warmup` seconds in (start-up, a first backlog)
    until the last event is sent."""
    names = TopicNames(prefix="saturation.")
    await create_topics(kafka, names, partitions=PARTITIONS, replication_factor=1)
    messages = serialised(names, events)
    port = free_port()
    worker = start_worker(broker, names.prefix, port, tmp)
    try:
        while not worker_ready(port) and worker.poll() is None:
            await asyncio.sleep(0.2)
        producer = AIOKafkaProducer(**kafka, linger_ms=linger_ms)
        await producer.start()
        sending = asyncio.ensure_future(offer(producer, messages, rate))
        await asyncio.sleep(warmup)
        count, at, cpu = (
            await asyncio.to_thread(metric, port, "journey_events_total"),
            time.perf_counter(),
            cpu_seconds(os.getpid()),
        )
        await sending
        handled = await asyncio.to_thread(metric, port, "journey_events_total") - count
        elapsed = time.perf_counter() - at
        generator = (cpu_seconds(os.getpid()) - cpu) / elapsed
        await producer.stop()
    finally:
        worker.terminate()
        worker.wait(30)
    return handled / elapsed, generator


async def latency(
    kafka: dict[str, Any],
    pipeline: Pipeline,
    events: list[dict[str, Any]],
    rate: float,
    *,
    linger_ms: int,
    warmup: float = 1.0,
    window: float = 5.0,
    broker_pid: int | None = None,
) -> Latency:
    """p50 and p99 of produce -> `pipeline`'s output, in ms, with `events` offered at `rate`
    events/s by a producer that batches for `linger_ms` (counted in the latency); and the
    p99 of each `window` seconds, in ms; and the share of a CPU the broker, the pipeline's
    process and this one (the load generator and the reader) used meanwhile.

    The events of the first `warmup` seconds are sent but not measured: the first
    messages to each topic pay for connections and metadata (measured: up to 120 ms in the
    first half second, none later), which is start-up, not steady-state latency.
    """
    unmeasured = int(rate * warmup)
    names = pipeline.names
    await create_topics(kafka, names, partitions=PARTITIONS, replication_factor=1)
    process = pipeline.start()
    launched = time.perf_counter()
    sent_at: dict[str, float] = {}
    seen: list[tuple[float, float]] = []
    # Committed records only: on Apache Kafka the worker writes in transactions (a reader that
    # wants each output once reads so), and this is the latency such a reader sees.
    consumer = AIOKafkaConsumer(
        pipeline.output,
        **kafka,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,
        isolation_level="read_committed",
    )
    await consumer.start()
    messages = serialised(names, events)

    async def read() -> None:
        async for message in consumer:
            if message.value is None:
                continue  # a merged id's tombstone (identity traffic): no event of its own
            sent = sent_at.pop(json.loads(message.value)[pipeline.cause_field], None)
            if sent is not None:
                now = time.perf_counter()
                seen.append((now, now - sent))

    reader = asyncio.create_task(read())
    try:
        while not pipeline.ready(process) and process.poll() is None:
            await asyncio.sleep(0.2)
        ready_after = time.perf_counter() - launched
        producer = AIOKafkaProducer(**kafka, linger_ms=linger_ms)
        await producer.start()
        pids = {"broker": broker_pid, "pipeline": process.pid, "load generator": os.getpid()}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        await offer(producer, messages, rate, sent_at, unmeasured)
        await producer.stop()
        await asyncio.sleep(3)
        elapsed = time.perf_counter() - started
        cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / elapsed for name, pid in pids.items()}
    finally:
        reader.cancel()
        await consumer.stop()
        process.terminate()
        process.wait(30)
    if not seen:
        raise RuntimeError(f"no output from {type(pipeline).__name__} in the latency stage")
    ordered = sorted(delay for _, delay in seen)
    windows: dict[int, list[float]] = {}
    first = seen[0][0]
    for at, delay in seen:
        windows.setdefault(int((at - first) / window), []).append(delay)
    per_window = [percentile(sorted(delays), 0.99) * 1000 for _, delays in sorted(windows.items())]
    p50, p99 = percentile(ordered, 0.5) * 1000, percentile(ordered, 0.99) * 1000
    return p50, p99, len(ordered), per_window, cpu, ready_after


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) a process has used so far, from /proc; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LatencyRun(NamedTuple):
    """One pipeline's latency stage, as handed to the process that measures it."""

    url: str
    bootstrap: list[str]
    broker_pid: int | None
    label: str
    rate: float
    seconds: float


def measure_latency(run: LatencyRun, identity: bool, linger_ms: int, tmp: Path) -> Latency:
    """`latency` of one pipeline, measured from a process of its own (`--latency`), as a
    producer and a consumer of the outputs are: this one holds every earlier stage's
    workloads, and a collection walking them pauses the loop that sends and reads (one of
    434 ms was seen in a process holding a workload of 300,000 events)."""
    spec = json.dumps({**run._asdict(), "identity": identity, "linger_ms": linger_ms, "tmp": str(tmp)})
    result = subprocess.run(
        [sys.executable, __file__, "--latency", spec], stdout=subprocess.PIPE, check=True, timeout=900
    )
    # The last line: the pipelines it starts may print before it.
    p50, p99, samples, windows, cpu, ready_after = json.loads(result.stdout.splitlines()[-1])
    return p50, p99, samples, windows, cpu, ready_after


async def serve_latency(spec: dict[str, Any]) -> list[Any]:
    """The latency process (`--latency`): a warm-up run of the pipeline, then the measured
    one, a process started again on the same topics, as a deployed pipeline restarts.

    The warm-up is for Kafka, not the pipeline: on Apache Kafka 4.1.1 the first writes to
    partitions just created stall for 0.6-2 s (a plain aiokafka producer, acks=1, its third
    request to 40 new partitions; none to partitions written before: docs/benchmarks.md,
    2026-12-06). journey writes to about ten new topics, the raw passthrough to one, so
    measured on fresh topics that is most of journey's first 5 s. Deployed topics are
    written once and then for good; a worker started on them is what is measured.

    The workloads are made here, then frozen, so that the collector never walks them while
    messages are sent and read."""
    run = LatencyRun(*(spec[name] for name in LatencyRun._fields))
    tmp = Path(spec["tmp"])
    pipeline: Pipeline = RawPipeline(run, tmp) if run.label == "raw" else JourneyPipeline(run, tmp)
    warm = workload(int(run.rate * WARM_UP_SECONDS), identity=spec["identity"], prefix="w")
    events = workload(int(run.rate * (1.0 + run.seconds)), identity=spec["identity"])
    gc.freeze()
    kafka = {"bootstrap_servers": run.bootstrap}
    options: dict[str, Any] = {"linger_ms": spec["linger_ms"], "broker_pid": run.broker_pid}
    await latency(kafka, pipeline, warm, run.rate, **options)
    return list(await latency(kafka, pipeline, events, run.rate, **options))


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def replay_rate(events: list[dict[str, Any]], tmp: Path) -> tuple[float, float, float, float, int]:
    """Events/s of `journey replay`'s work on a file of the events (read, parse, validate,
    fold, one JSON line per customer) with one process and with one per CPU (best of three
    runs each), of `journey replay --impact` with one per CPU, and of the fold alone; and
    how many processes "one per CPU" was.

    Timed in a process of its own, as `journey replay` runs: in this one, beside the
    workload it generated and parsed, every collection walked that heap too (measured:
    one process 26.5 against 19.4 microseconds an event, docs/benchmarks.md)."""
    path = tmp / "replay.jsonl"
    path.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in events))
    command = [sys.executable, __file__, "--replay-rates", str(path)]
    rates = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
    return rates[0], rates[1], rates[2], rates[3], int(rates[4])


def serve_replay_rates(path: Path) -> list[float]:
    """The replay stage's process (`--replay-rates`): see `replay_rate`."""
    rules = ScoringRules(rates=load_rates(RATES, "USD"))
    count = sum(1 for _ in path.open("rb"))
    jobs = default_jobs()
    rates = []
    for processes, impact in ((1, False), (jobs, False), (jobs, True)):
        # The best of three, as timeit reports: a pure CPU stage on a noisy machine.
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            replay_file(path, rules, currencies=rules.rates, jobs=processes, impact=impact)
            best = min(best, time.perf_counter() - started)
        rates.append(count / best)
    parsed = [
        scored(parse_event(line, expected_type=None, currencies=rules.rates))
        for line in path.open("rb")
        if b'"identify"' not in line
    ]
    with fewer_collections():
        started = time.perf_counter()
        states: dict[str, CustomerState] = {}
        for event in parsed:
            state = states.get(event.customer_id) or states.setdefault(
                event.customer_id, CustomerState(event.customer_id)
            )
            apply_event(state, event, rules)
        rates.append(count / (time.perf_counter() - started))
    return [*rates, jobs]


def rss_bytes() -> int:
    """Resident memory of this process: what the allocator really took, overheads included."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory_per_customer(customers: int) -> float:
    """Bytes a worker holds per customer after a typical short journey (6 events, every type):
    the table entry (customer_id -> encoded state) and its place in the set of live customers."""
    rules = ScoringRules(rates=load_rates(RATES, "USD"))
    template = list(JourneySimulator(seed=1, customers=50, currencies=["USD"]).events(400))
    kinds = {e["type"]: e for e in template}
    journey = [
        kinds["touchpoint"],
        kinds["touchpoint"],
        kinds["purchase"],
        kinds["survey"],
        kinds["share"],
        kinds["touchpoint"],
    ]
    gc.collect()
    before = rss_bytes()
    held: dict[str, bytes] = {}
    live: set[str] = set()
    for number in range(customers):
        customer_id = f"cust-{number:08d}"
        state = CustomerState(customer_id)
        for index, template_event in enumerate(journey):
            data = {**template_event, "customer_id": customer_id, "event_id": f"ev-{number:08d}-{index}"}
            if "share_id" in data:
                data["share_id"] = f"share-{number:08d}"
            event = scored(parse_event(json.dumps(data).encode(), expected_type=None, currencies=rules.rates))
            apply_event(state, event, rules)
        held[customer_id] = to_store(state, None, rules.csat_window_us, rules.cltv_window_us)[0]
        live.add(customer_id)
    gc.collect()
    return (rss_bytes() - before) / customers


def start_broker(which: str, tmp: Path) -> Broker:
    """The broker to measure on; entered with `with`."""
    if which == "kafka":
        return KafkaCluster(tmp / "kafka", 1)
    return EmbeddedBroker(free_port())


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="events in the workload")
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers for the memory measure")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument(
        "--saturation-seconds",
        type=float,
        default=8.0,
        help="how long the worker's saturation is measured with the load generator running",
    )
    parser.add_argument(
        "--linger-ms",
        type=int,
        default=25,
        help="the latency stage's producer batching, ms (counted in the latency; docs/benchmarks.md)",
    )
    parser.add_argument(
        "--throughput-only",
        action="store_true",
        help="stop after the raw and journey throughput stage (and the restart on its state)",
    )
    parser.add_argument(
        "--broker",
        choices=["tansu", "kafka"],
        default="tansu",
        help="the embedded broker, or one Apache Kafka node (from `make kafka`'s jars)",
    )
    parser.add_argument(
        "--without-identity",
        action="store_true",
        help="a workload without anonymous histories and identify events (the baseline of identity's cost)",
    )
    parser.add_argument(
        "--history",
        default="10,100,1000",
        help="prior events per customer for the history stage, comma-separated ('' skips it;"
        " issue #33 asks for 5000 too)",
    )
    parser.add_argument("--history-only", action="store_true", help="run only the history stage")
    parser.add_argument("--passthrough", nargs=4, help=argparse.SUPPRESS)  # RawPipeline's process
    parser.add_argument("--raw-throughput", nargs=3, help=argparse.SUPPRESS)  # raw_passthrough's
    parser.add_argument("--replay-rates", type=Path, help=argparse.SUPPRESS)  # replay_rate's
    parser.add_argument("--latency", help=argparse.SUPPRESS)  # measure_latency's
    args = parser.parse_args()
    if args.latency:
        print(json.dumps(await serve_latency(json.loads(args.latency))))
        return
    if args.replay_rates:
        print(json.dumps(serve_replay_rates(args.replay_rates)))
        return
    if args.raw_throughput:
        bootstrap, run, count = args.raw_throughput
        print(await serve_raw_throughput(bootstrap, run, int(count)))
        return
    if args.passthrough:
        bootstrap, prefix, ready_file, start = args.passthrough
        await serve_passthrough(bootstrap, prefix, Path(ready_file), start)
        return

    log(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    identity = not args.without_identity
    events = workload(args.events, identity=identity)
    identified = sum(1 for e in events if e["type"] == "identify")
    log(
        f"workload: {len(events)} simulated events of {len({e['customer_id'] for e in events})} ids, "
        f"{identified} identify events"
    )
    with tempfile.TemporaryDirectory() as directory, start_broker(args.broker, Path(directory)) as broker:
        tmp = Path(directory)
        log(f"broker: {args.broker} ({broker.url})")
        kafka = {"bootstrap_servers": broker.bootstrap}
        priors = [int(n) for n in args.history.split(",") if n.strip()]
        if args.history_only:
            await history(broker, kafka, priors, tmp)
            return
        messages = [("raw", e["customer_id"].encode(), json.dumps(e).encode()) for e in events]
        parsed = parse_all(events)
        links = expected_links(parsed)
        everyone = expected_everyone(events, tmp)
        raws, journeys = [], []
        for run in range(THROUGHPUT_RUNS):
            raws.append(await raw_passthrough(kafka, messages, run))
            journeys.append(await journey_throughput(broker, kafka, events, links, everyone, tmp, run))
            log(f"  run {run + 1}: raw {raws[-1]:,.0f} events/s, journey {journeys[-1]:,.0f} events/s")
        raw, journey = max(raws), max(journeys)
        log(f"raw aiokafka passthrough: {raw:10,.0f} events/s   (best of {THROUGHPUT_RUNS})")
        log(
            f"journey, one worker:      {journey:10,.0f} events/s   (best of {THROUGHPUT_RUNS})   "
            f"journey/raw = {journey / raw:.1%}"
        )
        records, assigned, ready = await restore(broker, kafka, TopicNames(prefix="bench0."), tmp)
        log(
            f"restore: a worker started again on the first journey run's state: {records:,} changelog "
            f"records, its partitions {assigned:.1f} s after its start, ready {ready:.1f} s after "
            f"({records / (ready - assigned):,.0f} records/s)"
        )
        if args.throughput_only:
            return
        single, full, with_impact, core, jobs = replay_rate(events, tmp)
        log(
            f"journey replay:           {full:10,.0f} events/s   ({jobs} processes; one process: "
            f"{single:,.0f} events/s; the fold alone: {core:,.0f} events/s)"
        )
        log(f"journey replay --impact:  {with_impact:10,.0f} events/s   ({jobs} processes)")
        # Offered more than the worker can take: it is then as busy as it can be with the
        # load generator beside it. Never above the throughput stage's (the worker alone).
        overload = journey * SATURATION_OVERLOAD
        loaded, generator = await saturation(
            broker,
            kafka,
            workload(int(overload * (SATURATION_WARMUP + args.saturation_seconds)), identity=identity),
            overload,
            tmp,
            linger_ms=args.linger_ms,
            warmup=SATURATION_WARMUP,
        )
        saturated = min(loaded, journey)
        log(
            f"journey saturated, load generator running: {loaded:,.0f} events/s offered "
            f"{overload:,.0f} (load generator CPU {generator:.0%}); half of "
            f"{saturated:,.0f} is the latency stage's load"
        )
        offered = saturated / 2
        p99s: dict[str, float] = {}
        for label in ("raw", "journey"):
            spec = LatencyRun(broker.url, broker.bootstrap, broker.pid, label, offered, args.latency_seconds)
            p50, p99, samples, windows, cpu, ready_after = measure_latency(
                spec, identity, args.linger_ms, tmp
            )
            p99s[label] = p99
            log(
                f"latency, {label:7} at {offered:,.0f} events/s (50% of saturation under load): "
                f"p50 {p50:6.1f} ms, p99 {p99:7.1f} ms ({samples} messages; p99 per 5 s: "
                f"{', '.join(f'{w:.0f}' for w in windows)}; CPU: "
                f"{', '.join(f'{name} {share:.0%}' for name, share in cpu.items())}; "
                f"ready {ready_after:.1f} s after its start, on topics a warm-up run wrote)"
            )
        growth = await history(broker, kafka, priors, tmp)
    per_customer = memory_per_customer(args.customers)
    log(f"memory: {per_customer:,.0f} bytes per customer held ({args.customers:,} customers, 6 events each)")
    # Issue #17's latency target is this ratio: journey's p99 over the raw passthrough's.
    ratio = p99s["journey"] / p99s["raw"] if p99s["raw"] else float("inf")
    log(
        f"summary ({args.broker}): journey/raw {journey / raw:.1%}, replay {full:,.0f}/s, p99 {p99s['journey']:.0f} ms "
        f"(raw {p99s['raw']:.0f} ms, {ratio:.1f}x), {per_customer:,.0f} B/customer{growth}"
    )


async def history(broker: Broker, kafka: dict[str, Any], priors: list[int], tmp: Path) -> str:
    """The history stage (`benchmarks/history.py`); its part of the summary line: the
    longest history's CPU and bytes per event over the shortest's."""
    if not priors:
        return ""
    log(f"history: one more event for customers of {', '.join(map(str, priors))} prior events")
    costs = await history_stage(
        kafka,
        priors,
        produce=produce,
        start_worker=lambda prefix, port, settings: start_worker(broker, prefix, port, tmp, settings),
        events_handled=lambda port: metric(port, "journey_events_total"),
        cpu_seconds=cpu_seconds,
        free_port=free_port,
        partitions=PARTITIONS,
        tmp=tmp,
    )
    for prior, head, stored, decoded in memory_by_history(
        priors, ScoringRules(rates=load_rates(RATES, "USD"))
    ):
        log(
            f"  a customer of {prior} prior events: head record {head:,.0f} B; memory {stored:,.0f} B "
            f"stored (head and segments), {decoded:,.0f} B decoded in the cache"
        )
    # The worst ratio of the longest history's cost over the shortest's, of any profile.
    ratios = []
    for profile in {cost.profile for cost in costs}:
        mine = [cost for cost in costs if cost.profile == profile]
        short, long = mine[0], mine[-1]
        ratios.append(
            (
                long.cpu_us / short.cpu_us,
                long.changelog_bytes / short.changelog_bytes,
                long.written_bytes / short.written_bytes,
            )
        )
    cpu, changelog, written = (max(column) for column in zip(*ratios, strict=True))
    log(
        f"history {priors[-1]}/{priors[0]} (the worst profile): CPU per event {cpu:.2f}x, state changelogs "
        f"{changelog:.2f}x, bytes written per event {written:.2f}x (target: 1.5x)"
    )
    return f", history {priors[-1]}/{priors[0]} {cpu:.1f}x CPU {written:.1f}x bytes"


if __name__ == "__main__":
    asyncio.run(main())
