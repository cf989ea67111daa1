"""The public conformance set through the pure core: replay and the referral join."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from journey.event_files import read_event_file
from journey.replay import replay
from schemas.decode import parse_event
from tests.fixtures.conformance import state_mismatches
from tests.unit.test_order_independence import join_all


def _replay(conformance: Any, lines: list[bytes], tmp_path: Path) -> dict[str, dict[str, Any]]:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = replay(read_event_file(path, currencies=conformance.rates), conformance.rules)
    assert result.invalid == 0
    return {state.customer_id: state.view() for state in result.sorted_states()}


def test_replay_equals_the_expected_states(conformance: Any, tmp_path: Path) -> None:
    states = _replay(conformance, conformance.raw_lines, tmp_path)
    assert set(states) == set(conformance.expected_states)
    problems = [
        p for cid, want in conformance.expected_states.items() for p in state_mismatches(want, states[cid])
    ]
    assert problems == []


def test_replay_does_not_depend_on_the_order_of_the_file(conformance: Any, tmp_path: Path) -> None:
    reference = _replay(conformance, conformance.raw_lines, tmp_path)
    for seed in range(3):
        lines = list(conformance.raw_lines)
        random.Random(seed).shuffle(lines)
        shuffled = _replay(conformance, lines, tmp_path)
        assert {k: {**v, "version": 0} for k, v in shuffled.items()} == {
            k: {**v, "version": 0} for k, v in reference.items()
        }


def test_referral_join_gives_the_expected_links(conformance: Any) -> None:
    events = [
        parse_event(line, expected_type=None, currencies=conformance.rates) for line in conformance.raw_lines
    ]
    links, self_referrals = join_all(events)
    assert links == {(l["share_id"], l["referrer_id"], l["referred_id"]) for l in conformance.expected_links}
    assert self_referrals >= 1  # the set has one self-referral, which makes no link
    random.Random(1).shuffle(events)
    assert join_all(events) == (links, self_referrals)
