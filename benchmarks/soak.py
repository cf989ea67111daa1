"""`make soak`: one worker at a steady rate for a long time; memory, lag and p99 sampled.

Prints one line per sample and a summary; the worker's states are compared with replay of
the same events at the end, so a long run also proves nothing was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from journey.customer import CustomerState
from journey.money import load_rates
from journey.referrals import join_all, sighting_for
from journey.replay import link_referrals
from journey.scoring import ScoringRules, apply_event
from journey.simulate import JourneySimulator
from schemas.decode import parse_event, scored
from stream.brokers.embedded import EmbeddedBroker, free_port
from stream.kafka.admin import create_topics
from stream.kafka.topics import TopicNames

ROOT = Path(__file__).resolve().parents[1]
RATES = ROOT / "deploy" / "fx-rates.json"


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def total(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(prefix))


def p99(before: dict[str, float], after: dict[str, float]) -> float:
    """p99 of journey_processing_seconds between two scrapes, from the bucket deltas."""
    buckets: dict[float, float] = {}
    for name, value in after.items():
        if name.startswith("journey_processing_seconds_bucket"):
            bound = name.split('le="')[1].split('"')[0]
            upper = float("inf") if bound == "+Inf" else float(bound)
            buckets[upper] = buckets.get(upper, 0) + value - before.get(name, 0)
    ordered = sorted(buckets.items())
    count = ordered[-1][1] if ordered else 0
    for upper, cumulative in ordered:
        if count and cumulative >= 0.99 * count:
            return upper
    return 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=400.0, help="events per second")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    # The embedded broker's fetches slow down with the number of record batches a partition
    # holds: at 5 ms nearly every event was a batch of its own and the broker reached a full
    # core in 5 minutes (docs/benchmarks.md).
    parser.add_argument(
        "--linger-ms", type=int, default=200, help="the load generator's producer batching, ms"
    )
    args = parser.parse_args()
    rates = load_rates(RATES, "USD")
    # Persons of one id: the check below folds each id alone.
    simulator = JourneySimulator(
        seed=5, customers=10_000_000, currencies=sorted(rates.rates), prefix="soak", anonymous_every=0
    )
    events = simulator.events()
    sent: list[bytes] = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(free_port()) as broker:
        kafka = {"bootstrap_servers": [f"127.0.0.1:{broker.port}"]}
        names = TopicNames(prefix="soak.")
        await create_topics(kafka, names, partitions=4, replication_factor=1)
        port = free_port()
        env = {
            **os.environ,
            "JOURNEY_BROKER": broker.url,
            "JOURNEY_TOPIC_PREFIX": names.prefix,
            "JOURNEY_WEB_PORT": str(port),
            "JOURNEY_FX_RATES": str(RATES),
            "JOURNEY_DATA_DIR": tmp,
            "JOURNEY_LOG_LEVEL": "warning",
            "JOURNEY_LAG_INTERVAL": "2",
        }
        with (Path(tmp) / "worker.log").open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "cli", "worker"], env=env, stdout=log, stderr=log
            )
        producer = AIOKafkaProducer(**kafka, linger_ms=args.linger_ms)
        await producer.start()
        print(
            f"soak: {args.minutes:g} min at {args.rate:g} events/s, sample every {args.sample:g} s",
            flush=True,
        )
        print("minute  sent      handled   rss_mb  lag    p99_ms", flush=True)
        started = time.monotonic()
        next_sample = started + args.sample
        previous: dict[str, float] = {}
        samples: list[tuple[float, float, float, float]] = []
        try:
            while time.monotonic() - started < args.minutes * 60:
                due = int((time.monotonic() - started) * args.rate) - len(sent)
                for _ in range(max(due, 0)):
                    event: dict[str, Any] = next(events)
                    raw = json.dumps(event).encode()
                    sent.append(raw)
                    await producer.send(names.for_type(event["type"]), raw, key=event["customer_id"].encode())
                if time.monotonic() >= next_sample:
                    next_sample += args.sample
                    values = await asyncio.to_thread(scrape, port)
                    minute = (time.monotonic() - started) / 60
                    sample = (
                        rss_mb(worker.pid),
                        total(values, "journey_consumer_lag"),
                        p99(previous, values) * 1000,
                        total(values, "journey_events_total"),
                    )
                    samples.append((*sample[:3], minute))
                    previous = values
                    print(
                        f"{minute:6.1f}  {len(sent):8d}  {sample[3]:8.0f}  {sample[0]:6.1f}  {sample[1]:5.0f}  "
                        f"{sample[2]:6.1f}",
                        flush=True,
                    )
                await asyncio.sleep(0.02)
            await producer.flush()
            deadline = time.monotonic() + 300
            while total(await asyncio.to_thread(scrape, port), "journey_events_total") < len(sent):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            # What replay makes of the same events, referral links included (they give the
            # referred customers their `referred_by` and `referral_channels` keys).
            rules = ScoringRules(rates=rates)
            states: dict[str, CustomerState] = {}
            sightings: list[dict[str, Any]] = []
            for raw in sent:
                parsed = scored(parse_event(raw, expected_type=None, currencies=rates))
                apply_event(
                    states.setdefault(parsed.customer_id, CustomerState(parsed.customer_id)), parsed, rules
                )
                sighting = sighting_for(parsed)
                if sighting is not None:
                    sightings.append(sighting)
            link_referrals(states, join_all(sightings))
            mismatches = 0
            for customer_id in list(states)[:: max(1, len(states) // 2000)]:
                token = os.environ.get("JOURNEY_API_TOKEN")  # the worker has the same environment
                lookup = urllib.request.Request(
                    f"http://127.0.0.1:{port}/customers/{customer_id}",
                    headers={"Authorization": f"Bearer {token}"} if token else {},
                )
                with urllib.request.urlopen(lookup, timeout=5) as r:
                    got = json.loads(r.read())
                want = states[customer_id].view()
                got.pop("version")
                want.pop("version")
                mismatches += got != want
            first, last = samples[0] if samples else (0, 0, 0, 0), samples[-1] if samples else (0, 0, 0, 0)
            print(
                f"summary: {len(sent)} events of {len(states)} customers; rss {first[0]:.0f} -> {last[0]:.0f} MB; "
                f"max lag {max(s[1] for s in samples):.0f}; max p99 {max(s[2] for s in samples):.1f} ms; "
                f"sampled states equal to replay: {mismatches == 0} ({mismatches} differ)",
                flush=True,
            )
        finally:
            await producer.stop()
            worker.terminate()
            worker.wait(30)


if __name__ == "__main__":
    asyncio.run(main())
