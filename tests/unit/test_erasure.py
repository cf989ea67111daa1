"""Erasure without a broker (SPEC.md, "Erasure"): `journey replay --erasures` answers as if
the erased events had never been sent, whatever the order and duplicates of the requests."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.main import cli
from journey.customer import CustomerState, to_us
from journey.erasure import erase_state, erased, horizons
from journey.event_files import FileLine
from journey.replay import replay, replay_file
from journey.scoring import ScoringRules, apply_event
from journey.simulate import JourneySimulator
from schemas.decode import InvalidEvent, parse_erasure, parse_event
from schemas.events import ErasureRequest, Event
from tests.unit.strategies import RATES, customer_events, deliveries

RULES = ScoringRules(rates=RATES)
_BASE = datetime(2026, 1, 1, tzinfo=UTC)


def _request(request_id: str, customer_id: str, day: int) -> ErasureRequest:
    return ErasureRequest(
        request_id=request_id, customer_id=customer_id, requested_at=_BASE + timedelta(days=day)
    )


_REQUESTS = st.lists(
    st.builds(
        _request,
        st.sampled_from(["r-1", "r-2", "r-3", "r-4"]),
        st.sampled_from(["a", "b"]),
        st.integers(0, 9),
    ),
    max_size=8,
)


@given(_REQUESTS, st.randoms())
@settings(max_examples=200, deadline=None)
def test_horizons_do_not_depend_on_order_or_repeats(
    requests: list[ErasureRequest], chooser: random.Random
) -> None:
    # A repeated request_id is a duplicate: what counts is each id's first request.
    first: dict[str, ErasureRequest] = {}
    for request in requests:
        first.setdefault(request.request_id, request)
    unique = list(first.values())
    shuffled = unique + chooser.sample(unique, len(unique))
    chooser.shuffle(shuffled)
    # (Shuffling keeps each id's content the same: duplicates are the same request again.)
    assert horizons(shuffled) == horizons(unique)
    for customer in ("a", "b"):
        days = [r.requested_at for r in unique if r.customer_id == customer]
        assert horizons(unique).get(customer) == (
            None
            if not days
            else int((max(days) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
        )


def _write_world(path: Path, seed: int, count: int) -> list[dict[str, Any]]:
    events = list(
        JourneySimulator(seed=seed, customers=count // 6, currencies=sorted(RATES.rates)).events(count)
    )
    path.write_bytes(b"".join(json.dumps(event).encode() + b"\n" for event in events))
    return events


@pytest.mark.parametrize("jobs", [1, 3])
def test_replay_with_erasures_equals_replay_of_what_survives(tmp_path: Path, jobs: int) -> None:
    events = _write_world(tmp_path / "events.jsonl", seed=3, count=3_000)
    chooser = random.Random(jobs)
    customers = sorted({e["customer_id"] for e in events})
    referrers = sorted({e["customer_id"] for e in events if e["type"] == "share"})
    requests = []
    for number, customer in enumerate(chooser.sample(customers, 40) + referrers[:10]):
        times = sorted(e["occurred_at"] for e in events if e["customer_id"] == customer)
        # Before all of its events, in the middle of them, after all of them.
        at = chooser.choice(["2000-01-01T00:00:00Z", times[len(times) // 2], "2100-01-01T00:00:00Z"])
        requests.append(
            _request(f"r-{number}", customer, 0).model_copy(
                update={"requested_at": datetime.fromisoformat(at.replace("Z", "+00:00"))}
            )
        )
    until = horizons(requests)
    survivors = tmp_path / "survivors.jsonl"
    kept = []
    for event in events:
        parsed = parse_event(json.dumps(event).encode(), expected_type=None, currencies=RATES.rates)
        if not erased(parsed, until):
            kept.append(event)
    survivors.write_bytes(b"".join(json.dumps(event).encode() + b"\n" for event in kept))
    assert 0 < len(kept) < len(events)

    def erasing(impact: bool) -> Any:
        return replay_file(
            tmp_path / "events.jsonl",
            RULES,
            currencies=RATES.rates,
            jobs=jobs,
            parallel_from_bytes=0,
            erasures=until,
            impact=impact,
        )

    with_erasures = erasing(impact=True)
    assert with_erasures.erased == len(events) - len(kept)
    assert with_erasures.impact == replay_file(survivors, RULES, currencies=RATES.rates, impact=True).impact
    states = erasing(impact=False)
    assert states.lines == replay_file(survivors, RULES, currencies=RATES.rates).lines
    # An erased referrer's links are gone from the customers it brought in.
    gone = {r.customer_id for r in requests if r.requested_at.year == 2100}
    for line in states.lines:
        state = orjson.loads(line)
        assert state["customer_id"] not in gone
        assert not set(state["referred_by"]) & gone


def test_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_FX_RATES", str(Path(__file__).parents[2] / "deploy" / "fx-rates.json"))
    events = _write_world(tmp_path / "events.jsonl", seed=4, count=300)
    target = events[0]["customer_id"]
    requests = tmp_path / "erasures.jsonl"
    requests.write_text(
        json.dumps({"request_id": "r-1", "customer_id": target, "requested_at": "2100-01-01T00:00:00Z"})
        + "\n{not json\n"
        + json.dumps({"request_id": "", "customer_id": target, "requested_at": "2100-01-01T00:00:00Z"})
        + "\n"
    )
    runner = CliRunner()
    result = runner.invoke(cli, ["replay", str(tmp_path / "events.jsonl"), "--erasures", str(requests)])
    assert result.exit_code == 0, result.output
    ids = [json.loads(line)["customer_id"] for line in result.stdout.splitlines()]
    assert target not in ids and len(ids) > 10
    assert (
        "erasures.jsonl:2: skipped" in result.stderr
        and "erasures.jsonl:3: skipped: request_id" in result.stderr
    )
    assert "events erased (1 ids with erasure horizons)" in result.stderr
    strict = runner.invoke(
        cli, ["replay", str(tmp_path / "events.jsonl"), "--erasures", str(requests), "--strict"]
    )
    assert strict.exit_code == 1 and "erasures.jsonl:2:" in strict.stderr


def test_requests_are_validated_like_events() -> None:
    ok = parse_erasure(
        b'{"request_id": "r", "customer_id": "c", "requested_at": "2026-03-01T10:00:00+01:00"}'
    )
    assert ok.requested_at == datetime(2026, 3, 1, 9, tzinfo=UTC)
    for raw, reason in [
        (b'{"request_id": "r", "customer_id": "c"}', "requested_at"),
        (b'{"request_id": "r", "customer_id": "c", "requested_at": "2026-03-01T10:00:00"}', "requested_at"),
        (
            b'{"request_id": "'
            + b"x" * 129
            + b'", "customer_id": "c", "requested_at": "2026-03-01T10:00:00Z"}',
            "request_id",
        ),
        (b"[]", "erasure request: must be a JSON object"),
    ]:
        with pytest.raises(InvalidEvent, match=reason):
            parse_erasure(raw)


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_a_worker_erasing_mid_stream_ends_where_replay_of_the_survivors_does(data: st.DataObject) -> None:
    """The worker's way (`journey.erasure.erase_state`): events arrive in any order with
    repeats; erasure requests arrive anywhere among them; each folds the state again from
    the events that had arrived by then, and later events at or before a horizon are
    dropped. The end equals replay of the surviving events, and replay with the requests."""
    events = data.draw(customer_events())
    stream = data.draw(deliveries(events))
    times = sorted(e.occurred_at for e in events)
    moments = st.sampled_from([*times, times[0] - timedelta(days=1), times[-1] + timedelta(days=1)])
    requests = data.draw(st.lists(st.builds(lambda at: ("c-1", at), moments), min_size=1, max_size=3))
    positions = sorted(
        data.draw(st.lists(st.integers(0, len(stream)), min_size=len(requests), max_size=len(requests)))
    )
    state = CustomerState("c-1")
    horizon = -1
    arrived: list[Event] = []
    erased_ids: set[str] = set()
    pending = list(zip(positions, requests, strict=True))
    for index in range(len(stream) + 1):
        while pending and pending[0][0] == index:
            _, (_, at) = pending.pop(0)
            horizon = max(horizon, to_us(at))
            if state.version and state.first_us <= horizon:
                folded, gone = erase_state(state, horizon, arrived, RULES)
                erased_ids |= state.seen - (folded.seen if folded else set())
                assert gone == len(state.seen - (folded.seen if folded else set()))
                state = folded or CustomerState("c-1")
        if index == len(stream):
            break
        event = stream[index]
        arrived.append(event)
        if to_us(event.occurred_at) <= horizon:
            continue
        apply_event(state, event, RULES)
    survivors = [e for e in events if to_us(e.occurred_at) > horizon]
    expected = replay(_lines(survivors), RULES).states.get("c-1")
    until = horizons(
        ErasureRequest(request_id=f"r-{n}", customer_id=c, requested_at=at)
        for n, (c, at) in enumerate(requests)
    )
    replayed = replay(_lines(stream), RULES, erasures=until).states.get("c-1")
    assert (replayed is None) == (expected is None)
    if expected is None:
        assert state.version == 0
        return
    assert replayed is not None
    unversioned = {**expected.view(), "version": 0}
    assert {**replayed.view(), "version": 0} == unversioned
    assert {**state.view(), "version": 0} == unversioned
    assert state.joined == expected.joined


def _lines(events: list[Event]) -> list[FileLine]:
    return [FileLine(Path("stream"), n, e, b"") for n, e in enumerate(events)]
