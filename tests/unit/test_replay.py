"""`journey replay` split over processes gives what one process gives, invalid lines included."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journey.customer import CustomerState
from journey.event_files import read_event_file
from journey.referrals import join_all, sighting_for
from journey.replay import _customer_share, _share_of, link_referrals, replay_file
from journey.scoring import ScoringRules, apply_event
from journey.simulate import JourneySimulator
from schemas.decode import DEFAULT_MAX_EVENT_BYTES, InvalidEvent, parse_event
from tests.unit.strategies import RATES
from tests.unit.test_fast_decode import messages

RULES = ScoringRules(rates=RATES)
BAD_LINES = [
    b"{broken",
    b'{"type": "survey", "customer_id": 5}',
    b'{"type": "survey", "event_id": "x", "customer_id": "c-000001", "score": 3}',
    b'{"type": "touchpoint", "event_id": "y", "customer_id": "c-\\ud800",'
    b' "occurred_at": "2026-01-01T00:00:00Z", "moment": "zmot", "channel": "s"}',
    b'{"type": "touchpoint", "event_id": "z", "customer_id": "c-000002", "occurred_at":'
    b' "2026-01-01T00:00:00Z", "moment": "fmot", "channel": "s", "sentiment": 0.12345678901234567}',
]


def write_events(path: Path, count: int, seed: int, *, identity: bool = True) -> None:
    """Simulated journeys (with `identity`, some identified from an anonymous id), bad lines among them."""
    simulator = JourneySimulator(
        seed=seed, customers=count // 6, currencies=sorted(RATES.rates), anonymous_every=20 if identity else 0
    )
    events = simulator.events(count)
    lines = [json.dumps(event).encode() for event in events]
    chooser = random.Random(seed)
    for bad in BAD_LINES:
        lines.insert(chooser.randrange(len(lines)), bad)
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_jobs_split_by_customer_and_agree_with_one_process(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path, 6_000, seed=5)
    one = replay_file(path, RULES, currencies=RATES.rates, jobs=1)
    three = replay_file(path, RULES, currencies=RATES.rates, jobs=3, parallel_from_bytes=0)
    assert three.lines == one.lines
    assert [(line.number, line.error) for line in three.invalid] == [
        (line.number, line.error) for line in one.invalid
    ]
    assert len(one.invalid) == 4  # the long sentiment is an event; a lone surrogate is not text
    assert (three.events, three.duplicates) == (one.events, one.duplicates)
    customers: list[dict[str, Any]] = [orjson.loads(line) for line in one.lines]
    assert [c["customer_id"] for c in customers] == sorted(c["customer_id"] for c in customers)
    assert len(customers) > 900
    assert sum(1 for c in customers if c["aliases"]) > 10  # persons of two ids, split alike


def test_split_replay_equals_the_fold_of_the_core(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path, 600, seed=9, identity=False)  # the fold below knows no persons
    result = replay_file(path, RULES, currencies=RATES.rates, jobs=2, parallel_from_bytes=0)
    states: dict[str, CustomerState] = {}
    for line in read_event_file(path, currencies=RATES.rates):
        if line.event is not None:
            event = line.event
            apply_event(states.setdefault(event.customer_id, CustomerState(event.customer_id)), event, RULES)
    # The referral links join customers folded in different processes.
    link_referrals(states, join_all(_sightings(path)))
    assert any(state.referrals for state in states.values())
    assert result.lines == [orjson.dumps(states[key].view()) for key in sorted(states)]


def _sightings(path: Path) -> list[dict[str, Any]]:
    """What the share joins see of a file, in file order (first of each event_id per customer)."""
    seen: set[tuple[str, str]] = set()
    sightings = []
    for line in read_event_file(path, currencies=RATES.rates):
        event = line.event
        if event is None or (event.customer_id, event.event_id) in seen:
            continue
        seen.add((event.customer_id, event.event_id))
        sighting = sighting_for(event)
        if sighting is not None:
            sightings.append(sighting)
    return sightings


def test_split_replay_gives_the_impact_of_one_process(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path, 3_000, seed=3)
    one = replay_file(path, RULES, currencies=RATES.rates, jobs=1, impact=True)
    three = replay_file(path, RULES, currencies=RATES.rates, jobs=3, parallel_from_bytes=0, impact=True)
    assert one.impact is not None and len(one.impact) > 10
    assert three.impact == one.impact


@given(messages(), st.integers(2, 5))
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_valid_line_goes_to_its_customers_process(message: tuple[bytes, str | None], shares: int) -> None:
    """Every process reads every line and keeps its customers' (`_share_of`, which reads only
    customer_id): a valid line must go where its event's customer_id sends it, or one
    customer's events would be folded in two places."""
    raw, _ = message
    try:
        event = parse_event(raw, expected_type=None, currencies=RATES)
    except InvalidEvent:
        return  # any one process reports it: which one does not matter
    assert _share_of(raw, shares, DEFAULT_MAX_EVENT_BYTES) == _customer_share(event.customer_id, shares)
