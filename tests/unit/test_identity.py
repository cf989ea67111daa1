"""Identity through the pure core: persons, canonical ids, merged states, replay of the
`identity/` conformance set."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journey.customer import CustomerState
from journey.event_files import read_erasure_file, read_event_file
from journey.identity import (
    IdRecord,
    Persons,
    decode_id_record,
    encode_id_record,
    merge_states,
    person_horizons,
)
from journey.referrals import ShareJoin, apply_sighting, join_all, rename, take_referral
from journey.replay import people_of, replay, replay_file
from journey.scoring import ScoringRules, apply_event
from schemas.decode import InvalidEvent, parse_event
from schemas.events import ErasureRequest, Event, Identify
from tests.fixtures.conformance import impact_mismatches, state_mismatches
from tests.unit.strategies import BASE, RATES, customer_events, deliveries

RULES = ScoringRules(rates=RATES)
PROFILE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _views(lines: list[bytes]) -> dict[str, dict[str, Any]]:
    return {view["customer_id"]: view for view in map(orjson.loads, lines)}


def _mismatches(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]) -> list[str]:
    problems = [f"{cid}: missing" for cid in expected if cid not in actual]
    problems += [f"{cid}: unexpected" for cid in actual if cid not in expected]
    return problems + [
        p for cid, want in expected.items() if cid in actual for p in state_mismatches(want, actual[cid])
    ]


@pytest.mark.parametrize("jobs", [1, 3])
def test_replay_gives_one_state_per_person(identity_conformance: Any, jobs: int) -> None:
    fx = identity_conformance
    result = replay_file(fx.events_path, fx.rules, currencies=fx.rates, jobs=jobs, parallel_from_bytes=0)
    assert result.invalid == []
    assert _mismatches(fx.expected_states, _views(result.lines)) == []
    # The set has persons of several ids, and an id that only an identify event names.
    assert sum(1 for state in fx.expected_states.values() if state["aliases"]) >= 10


def test_replay_gives_the_impact_of_persons(identity_conformance: Any) -> None:
    fx = identity_conformance
    result = replay_file(fx.events_path, fx.rules, currencies=fx.rates, impact=True)
    assert result.impact is not None
    assert impact_mismatches(fx.expected_impact, result.impact) == []


@pytest.mark.parametrize("jobs", [1, 3])
def test_an_erasure_reaches_every_id_of_the_person(identity_conformance: Any, jobs: int) -> None:
    fx = identity_conformance
    requests, bad = read_erasure_file(fx.erasures_path)
    assert bad == []
    result = replay_file(
        fx.events_path, fx.rules, currencies=fx.rates, requests=requests, jobs=jobs, parallel_from_bytes=0
    )
    assert _mismatches(fx.expected_after_erasures, _views(result.lines)) == []
    assert result.erased_ids > len({request.customer_id for request in requests})


def test_links_are_between_persons(identity_conformance: Any) -> None:
    fx = identity_conformance
    lines = list(read_event_file(fx.events_path, currencies=fx.rates))
    people = people_of(line.event for line in lines if isinstance(line.event, Identify))
    result = replay(lines, fx.rules, people=people, link=False)
    links = join_all([sighting for _, sighting in result.sightings])
    made = {(link["share_id"], link["referrer_id"], link["referred_id"]) for link in links}
    assert made == {(l["share_id"], l["referrer_id"], l["referred_id"]) for l in fx.expected_links}
    assert len(links) == len(made)  # at most one link per (share_id, referred person)


def test_replay_does_not_depend_on_the_order_of_the_file(identity_conformance: Any, tmp_path: Path) -> None:
    fx = identity_conformance
    reference = _views(replay_file(fx.events_path, fx.rules, currencies=fx.rates).lines)
    lines = list(fx.raw_lines)
    random.Random(5).shuffle(lines)
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_bytes(b"\n".join(lines) + b"\n")
    again = _views(replay_file(shuffled, fx.rules, currencies=fx.rates).lines)
    assert {k: {**v, "version": 0} for k, v in again.items()} == {
        k: {**v, "version": 0} for k, v in reference.items()
    }


def _identify(event_id: str, customer_id: str, anonymous_id: str, day: int) -> Identify:
    return Identify(
        event_id=event_id,
        customer_id=customer_id,
        anonymous_id=anonymous_id,
        occurred_at=BASE + timedelta(days=day),
    )


def test_an_identify_naming_one_id_twice_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="anonymous_id: must not equal customer_id"):
        parse_event(
            b'{"type": "identify", "event_id": "i-1", "customer_id": "c-1", "anonymous_id": "c-1",'
            b' "occurred_at": "2026-01-01T00:00:00Z"}',
            expected_type=None,
        )


def test_the_earliest_identify_names_the_person_whatever_the_order() -> None:
    events = [
        _identify("i-2", "c-2", "anon-1", 5),
        _identify("i-1", "c-1", "anon-1", 3),  # earliest: c-1 is canonical
        _identify("i-3", "c-2", "anon-2", 1),  # earlier still, but joins c-2 first...
    ]
    for order in (events, events[::-1], [events[1], events[2], events[0]]):
        persons = Persons()
        for event in order:
            persons.add(event)
        # ...so the whole person's earliest is i-3, whose customer_id is c-2.
        assert persons.canonical("anon-1") == persons.canonical("c-1") == "c-2"
        assert persons.ids("c-1") == {"c-1", "c-2", "anon-1", "anon-2"}
        assert persons.canonical("stranger") == "stranger"


def test_an_erasure_reaches_the_ids_linked_at_or_before_its_time() -> None:
    events = [_identify("i-1", "c-1", "anon-1", 3), _identify("i-2", "c-1", "anon-2", 10)]
    request = ErasureRequest(request_id="r-1", customer_id="anon-1", requested_at=BASE + timedelta(days=5))
    until = person_horizons(events, [request, request])
    # anon-2 was joined after the request's time: not reached.
    assert until == {"anon-1": until["c-1"], "c-1": until["anon-1"]} and "anon-2" not in until


def test_erased_identify_events_move_with_the_person_and_are_known_once() -> None:
    """A record keeps the identify events erasures took, so that they still link their ids
    for later requests (as `person_horizons` does); a person that joins another takes them
    along, and one learnt again is not new (the stream passes a horizon on only for news)."""
    erased = [[3, "i-1", "c-1", "anon-1"]]
    record = IdRecord(ids={"anon-2"})
    assert record.remember_erased(erased, 5, ["c-1", "anon-1"])
    assert not record.remember_erased([list(erased[0])], 9)
    assert record.erased == {"ids": ["anon-1", "c-1"], "identifies": erased, "horizon": 9}
    person = IdRecord(ids={"c-2"}, identifies=[[20, "i-3", "c-2", "anon-2"]])
    person.take(record)
    assert person.erased_identifies() == erased and person.ids == {"c-2", "anon-2"}
    assert decode_id_record(encode_id_record(person)).erased == person.erased


# -- merging folded states: the property that lets a worker merge without re-reading history


@st.composite
def person_events(draw: st.DrawFn) -> tuple[list[str], list[Event]]:
    """Events of a person of two to four ids (event_ids reused across ids on purpose)."""
    ids = [f"id-{index}" for index in range(draw(st.integers(2, 4)))]
    events: list[Event] = []
    for customer_id in ids:
        events += draw(customer_events(customer_id=customer_id, max_size=8))
    return ids, events


def _fold(into: str, events: list[Event]) -> CustomerState:
    state = CustomerState(into)
    for event in events:
        apply_event(state, event, RULES)
    return state


def _comparable(state: CustomerState) -> dict[str, Any]:
    view = state.view()
    for published in ("version",):
        view.pop(published)
    internals = {
        "seen": {cid: state.seen_of(cid) for cid in [state.customer_id, *state.alias_seen]},
        "windows": sorted(state.window_surveys),
        "sentiments": sorted(state.sentiments),
        "money": sorted(state.recent_money),
        "latest": state.latest_survey,
        "joined": state.joined,
    }
    return {**view, **internals}


@PROFILE
@given(st.data())
def test_merging_folded_parts_equals_folding_the_union(data: st.DataObject) -> None:
    ids, events = data.draw(person_events())
    into = data.draw(st.sampled_from(ids))
    # Any split of the ids into parts, each folded in any order with duplicates.
    part_of = {customer_id: data.draw(st.integers(0, 2)) for customer_id in ids}
    parts = []
    for index in range(3):
        mine = [event for event in events if part_of[event.customer_id] == index]
        if mine:
            owner = data.draw(st.sampled_from(sorted({event.customer_id for event in mine})))
            parts.append(_fold(owner, data.draw(deliveries(mine))))
    merged, _ = merge_states(into, parts, RULES)
    whole = _fold(into, data.draw(deliveries(events)))
    whole.aliases = set(ids) - {into}
    assert _comparable(merged) == _comparable(whole)


@PROFILE
@given(st.data())
def test_merge_is_commutative_and_associative(data: st.DataObject) -> None:
    ids, events = data.draw(person_events())
    parts = [_fold(customer_id, [e for e in events if e.customer_id == customer_id]) for customer_id in ids]
    into = ids[0]
    one, _ = merge_states(into, parts, RULES)
    shuffled = list(parts)
    random.Random(data.draw(st.integers(0, 99))).shuffle(shuffled)
    two, _ = merge_states(into, shuffled, RULES)
    left, _ = merge_states(ids[1], parts[:2], RULES)  # (a + b) + rest
    three, _ = merge_states(into, [left, *parts[2:]], RULES)
    assert _comparable(one) == _comparable(two) == _comparable(three)


def test_a_merge_goes_on_from_the_canonical_ids_version() -> None:
    known = _fold(
        "c-1",
        [
            parse_event(
                b'{"type": "purchase", "event_id": "e-1", "customer_id": "c-1", "order_id": "o", "amount": 10,'
                b' "currency": "USD", "occurred_at": "2026-01-02T00:00:00Z"}',
                expected_type=None,
            )
        ],
    )
    survey = parse_event(
        b'{"type": "survey", "event_id": "e-1", "customer_id": "anon-1", "score": 8,'
        b' "occurred_at": "2026-01-01T00:00:00Z"}',
        expected_type=None,
    )
    anonymous = _fold("anon-1", [survey])
    merged, updated = merge_states("c-1", [anonymous, known], RULES, cause=("i-1", "identify"))
    assert updated and merged.version == known.version + 1 and merged.previous_ppp == known.ppp
    assert (merged.ppp, merged.cause_event_id, merged.cause_type) == (80, "i-1", "identify")
    assert merged.aliases == {"anon-1"} and merged.alias_seen == {"anon-1": {"e-1"}}
    # The same event_id under another id is another event; under its own id, a duplicate.
    assert apply_event(merged, survey, RULES).duplicate
    # Joined under a canonical id that had no state: a new key, version 1.
    fresh, updated = merge_states("c-9", [anonymous], RULES)
    assert updated and fresh.version == 1 and fresh.previous_ppp is None


def _join_with_link() -> tuple[ShareJoin, list[dict[str, Any]]]:
    join = ShareJoin("s-1")
    links = apply_sighting(
        join,
        {
            "kind": "share",
            "share_id": "s-1",
            "customer_id": "c-56",
            "channel": "review",
            "at": 1,
            "event_id": "e-1",
        },
    ).links
    links += apply_sighting(
        join, {"kind": "zmot", "share_id": "s-1", "customer_id": "c-53", "at": 2, "event_id": "e-2"}
    ).links
    return join, links


@pytest.mark.parametrize("newest_first", [False, True])
def test_renames_in_either_order_leave_the_newest_person(newest_first: bool) -> None:
    """c-56 joins c-43 (version 3), then that person joins c-44 (version 7): the join ends
    with c-44 as referrer whichever rename comes first, and the links sent minus those
    retracted are exactly that one link."""
    join, sent = _join_with_link()
    renames = [(["c-43", "c-56"], "c-43", 3), (["c-43", "c-44", "c-56", "anon-5"], "c-44", 7)]
    retracted: list[dict[str, str]] = []
    for ids, new, version in renames[::-1] if newest_first else renames:
        result = rename(join, ids, new, version)
        retracted += result.retracted
        sent += result.links
    standing = Counter(_triple(link) for link in sent)
    standing.subtract(_triple(link) for link in retracted)
    assert +standing == Counter({("s-1", "c-44", "c-53"): 1})
    assert join.share is not None and join.share[0] == "c-44"
    # A sighting sent under an old id is the person's; a repeated rename changes nothing.
    assert join.person("c-56") == "c-44"
    assert rename(join, *renames[0]).retracted == []


def test_a_person_reached_by_its_own_share_under_another_id_makes_no_link() -> None:
    join, _ = _join_with_link()
    result = rename(join, ["c-53", "c-56"], "c-53", 2)
    assert result.retracted == [{"share_id": "s-1", "referrer_id": "c-56", "referred_id": "c-53"}]
    assert result.links == [] and join.linked == {}


def _triple(link: dict[str, Any]) -> tuple[str, str, str]:
    return (link["share_id"], link["referrer_id"], link["referred_id"])


_REFERRERS = ["c-56", "c-43", "c-44", None]  # None: an unlink


@PROFILE
@given(
    st.lists(st.sampled_from(_REFERRERS), min_size=1, max_size=6),
    st.data(),
)
def test_a_persons_referral_is_the_newest_message_of_the_join_whatever_the_route(
    sent: list[str | None], data: st.DataObject
) -> None:
    """A join's numbered messages to one person (links of changing referrers, unlinks) reach
    it under several of its ids, in any order and any number of times, and its parts merge
    in any order: the person ends with what the last message sent says (the late-identify
    test once ended with the referrer of the one before: a rename's messages overtaken)."""
    join = ShareJoin("s-1")
    messages = [
        join.numbered({"kind": "link" if referrer else "unlink", "share_id": "s-1", "referrer_id": referrer})
        for referrer in sent
    ]
    repeated = data.draw(st.lists(st.sampled_from(messages), max_size=len(messages)), label="again")
    delivered = data.draw(st.permutations(messages + repeated), label="delivered")
    ids = ["anon-6", "c-53", "c-54"]
    parts = {customer_id: CustomerState(customer_id) for customer_id in ids}
    for message in delivered:
        to = parts[data.draw(st.sampled_from(ids), label="route")]
        referrer = message["referrer_id"]
        take_referral(to, message, None if referrer is None else (referrer, "social"))
    order = data.draw(st.permutations(ids), label="merge order")
    merged = parts[order[0]]
    for customer_id in order[1:]:
        merged, _ = merge_states("c-53", [merged, parts[customer_id]], RULES)
    last = sent[-1]
    assert merged.referred_by() == ([] if last is None else [last])
    assert merged.referral_seqs == {"s-1": len(sent)}


def test_one_identify_event_is_its_event_id_and_customer_id_wherever_it_is_kept() -> None:
    # The same rule answers for a person's identify events and for those an erasure took.
    edge = [5, "e-1", "c", "a"]
    record = IdRecord(ids={"c", "a"})
    assert record.add_identify(edge)
    assert record.holds([9, "e-1", "c", "x"])  # its time and other id do not make it another
    assert not record.holds([5, "e-1", "a", "c"])  # the same event_id of another customer_id
    assert not record.add_identify([5, "e-1", "c", "a"])
    assert record.remember_erased([edge], 5)
    assert not record.remember_erased([[7, "e-1", "c", "z"]], 5)
    assert record.remember_erased([[5, "e-2", "c", "a"]], 5)
