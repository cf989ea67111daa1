"""`make bench`: journey against its ceiling, on one embedded broker, in one run.

1. raw: an aiokafka consume -> produce passthrough of the same messages (no parsing): the
   most a Python Kafka pipeline can do on this machine and broker;
2. journey: one `journey worker` process on the same messages;
3. replay: `journey replay`'s work (`journey.replay.replay_file`) on a file of the same
   events, with one process and with one per CPU (the pure core, with parsing and validation);
4. latency: produce-to-`ppp-updates` p50/p99 at a fixed offered load of half of (2);
5. memory: bytes per customer held, for `--customers` customers in the core's state.

Absolute numbers vary from machine to machine and run to run; the ratios are the result.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from journey.broker import EmbeddedBroker, free_port
from journey.customer import CustomerState, encode_state
from journey.money import load_rates
from journey.replay import default_jobs, replay_file
from journey.scoring import ScoringRules, apply_event
from journey.simulate import JourneySimulator
from schemas.decode import parse_event
from stream.admin import create_topics
from stream.topics import TopicNames

ROOT = Path(__file__).resolve().parents[1]
RATES = ROOT / "deploy" / "fx-rates.json"
PARTITIONS = 4


def log(message: str) -> None:
    print(message, flush=True)


def workload(count: int) -> list[dict[str, Any]]:
    currencies = sorted(load_rates(RATES, "USD").rates)
    return list(
        JourneySimulator(seed=42, customers=count // 6, currencies=currencies, prefix="b").events(count)
    )


async def produce(kafka: dict[str, Any], messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(**kafka, linger_ms=5, max_batch_size=262_144)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_passthrough(kafka: dict[str, Any], messages: list[tuple[str, bytes, bytes]]) -> float:
    """Events/s of consume -> produce with aiokafka alone, same messages, same partitions."""
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in ("raw-in", "raw-out")])
    await admin.close()
    await produce(kafka, [("raw-in", key, value) for _, key, value in messages])
    consumer = AIOKafkaConsumer(
        "raw-in",
        **kafka,
        group_id="raw",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
    )
    producer = AIOKafkaProducer(**kafka, linger_ms=5, max_batch_size=262_144)
    await consumer.start()
    await producer.start()
    try:
        done, started = 0, 0.0
        while done < len(messages):
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            if not started and batch:
                started = time.perf_counter()
            futures = [
                await producer.send("raw-out", r.value, key=r.key) for rs in batch.values() for r in rs
            ]
            done += len(futures)
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
        return len(messages) / (time.perf_counter() - started)
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


def assigned(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return bool(json.loads(response.read())["assigned"])
    except OSError:
        return False


def start_worker(broker: EmbeddedBroker, prefix: str, port: int, tmp: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "JOURNEY_BROKER": broker.url,
        "JOURNEY_TOPIC_PREFIX": prefix,
        "JOURNEY_WEB_PORT": str(port),
        "JOURNEY_FX_RATES": str(RATES),
        "JOURNEY_DATA_DIR": str(tmp / prefix),
        "JOURNEY_SESSION_TIMEOUT": "6",
        "JOURNEY_LOG_LEVEL": "warning",
    }
    log_file = (tmp / f"{prefix}worker.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "journey", "worker"], env=env, stdout=log_file, stderr=log_file
    )


async def journey_throughput(
    broker: EmbeddedBroker, kafka: dict[str, Any], events: list[dict[str, Any]], tmp: Path
) -> float:
    names = TopicNames(prefix="bench.")
    await create_topics(kafka, names, partitions=PARTITIONS, replication_factor=1)
    await produce(
        kafka,
        [(names.for_type(e["type"]), e["customer_id"].encode(), json.dumps(e).encode()) for e in events],
    )
    port = free_port()
    worker = start_worker(broker, names.prefix, port, tmp)
    try:
        first_count, first_at = 0.0, 0.0
        while True:
            count = metric(port, "journey_events_total")
            now = time.perf_counter()
            if count and not first_at:
                first_count, first_at = count, now
            if count >= len(events):
                return (count - first_count) / (now - first_at)
            await asyncio.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait(30)


async def latency(
    broker: EmbeddedBroker,
    kafka: dict[str, Any],
    rate: float,
    seconds: float,
    tmp: Path,
    *,
    warmup: float = 1.0,
) -> tuple[float, float, int]:
    """p50 and p99 of produce -> ppp-updates, at `rate` events/s for `seconds`, in ms.

    The first `warmup` seconds at the same rate are sent but not measured: the first
    messages to each topic pay for connections and metadata (measured: up to 120 ms in the
    first half second, none later), which is start-up, not steady-state latency.
    """
    events = workload(int(rate * (warmup + seconds)))
    unmeasured = int(rate * warmup)
    names = TopicNames(prefix="latency.")
    await create_topics(kafka, names, partitions=PARTITIONS, replication_factor=1)
    port = free_port()
    worker = start_worker(broker, names.prefix, port, tmp)
    sent_at: dict[str, float] = {}
    seen: list[float] = []
    consumer = AIOKafkaConsumer(names.ppp_updates, **kafka, auto_offset_reset="earliest", fetch_max_wait_ms=5)
    await consumer.start()

    async def read() -> None:
        async for message in consumer:
            cause = json.loads(message.value)["cause_event_id"]
            if cause in sent_at:
                seen.append(time.perf_counter() - sent_at.pop(cause))

    reader = asyncio.create_task(read())
    try:
        while not assigned(port) and worker.poll() is None:  # joined the group, partitions assigned
            await asyncio.sleep(0.2)
        producer = AIOKafkaProducer(**kafka, linger_ms=5)
        await producer.start()
        started = time.perf_counter()
        for index, event in enumerate(events):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if index >= unmeasured:
                sent_at[event["event_id"]] = time.perf_counter()
            await producer.send(
                names.for_type(event["type"]),
                json.dumps(event).encode(),
                key=event["customer_id"].encode(),
            )
        await producer.stop()
        await asyncio.sleep(3)
    finally:
        reader.cancel()
        await consumer.stop()
        worker.terminate()
        worker.wait(30)
    ordered = sorted(seen)
    return ordered[len(ordered) // 2] * 1000, ordered[int(len(ordered) * 0.99)] * 1000, len(ordered)


def replay_rate(events: list[dict[str, Any]], tmp: Path) -> tuple[float, float, float, int]:
    """Events/s of `journey replay`'s work on a file of the events (read, parse, validate,
    fold, one JSON line per customer) with one process and with one per CPU (best of three
    runs each), and of the fold alone; and how many processes "one per CPU" was."""
    rules = ScoringRules(rates=load_rates(RATES, "USD"))
    path = tmp / "replay.jsonl"
    path.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in events))
    jobs = default_jobs()
    rates = []
    for processes in (1, jobs):
        # The best of three, as timeit reports: a pure CPU stage on a noisy machine.
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            replay_file(path, rules, currencies=rules.rates, jobs=processes)
            best = min(best, time.perf_counter() - started)
        rates.append(len(events) / best)
    parsed = [parse_event(json.dumps(e).encode(), expected_type=None, currencies=rules.rates) for e in events]
    started = time.perf_counter()
    states: dict[str, CustomerState] = {}
    for event in parsed:
        state = states.get(event.customer_id) or states.setdefault(
            event.customer_id, CustomerState(event.customer_id)
        )
        apply_event(state, event, rules)
    return rates[0], rates[1], len(events) / (time.perf_counter() - started), jobs


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
            event = parse_event(json.dumps(data).encode(), expected_type=None, currencies=rules.rates)
            apply_event(state, event, rules)
        held[customer_id] = encode_state(state)
        live.add(customer_id)
    gc.collect()
    return (rss_bytes() - before) / customers


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=30_000, help="events in the workload")
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers for the memory measure")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    args = parser.parse_args()

    log(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    events = workload(args.events)
    log(f"workload: {len(events)} simulated events of {len({e['customer_id'] for e in events})} customers")
    with tempfile.TemporaryDirectory() as directory, EmbeddedBroker(free_port()) as broker:
        tmp = Path(directory)
        kafka = {"bootstrap_servers": [f"127.0.0.1:{broker.port}"]}
        messages = [("raw", e["customer_id"].encode(), json.dumps(e).encode()) for e in events]
        raw = await raw_passthrough(kafka, messages)
        log(f"raw aiokafka passthrough: {raw:10,.0f} events/s")
        journey = await journey_throughput(broker, kafka, events, tmp)
        log(f"journey, one worker:      {journey:10,.0f} events/s   journey/raw = {journey / raw:.1%}")
        single, full, core, jobs = replay_rate(events, tmp)
        log(
            f"journey replay:           {full:10,.0f} events/s   ({jobs} processes; one process: "
            f"{single:,.0f} events/s; the fold alone: {core:,.0f} events/s)"
        )
        offered = journey / 2
        p50, p99, samples = await latency(broker, kafka, offered, args.latency_seconds, tmp)
        log(
            f"end-to-end latency at {offered:,.0f} events/s (50% of saturation): p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms ({samples} updates)"
        )
    per_customer = memory_per_customer(args.customers)
    log(f"memory: {per_customer:,.0f} bytes per customer held ({args.customers:,} customers, 6 events each)")
    log(
        f"summary: journey/raw {journey / raw:.1%}, replay {full:,.0f}/s, p99 {p99:.0f} ms, "
        f"{per_customer:,.0f} B/customer"
    )


if __name__ == "__main__":
    asyncio.run(main())
