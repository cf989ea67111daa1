"""Impact (SPEC.md "Impact") through the pure core: the public examples, the arithmetic the
workers stream, and the properties the issue names."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journey.customer import CustomerState
from journey.impact import (
    ALL_KEY,
    ImpactEntry,
    add_change,
    apply_change,
    circle,
    contribution,
    decode_change,
    decode_entry,
    encode_change,
    encode_entry,
    entry_message,
    impact_report,
    pack,
    split_key,
    unpack,
    with_comparisons,
)
from journey.referrals import ShareJoin, apply_link, apply_sighting, sighting_for
from journey.replay import replay_file
from journey.scoring import ScoringRules, apply_event
from schemas.events import Event, Share, Touchpoint
from tests.fixtures.conformance import impact_mismatches, state_mismatches
from tests.unit.strategies import RATES, customer_events, deliveries

RULES = ScoringRules(rates=RATES)
PROFILE = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# The public examples --------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 3])
@pytest.mark.parametrize("which", ["impact_conformance", "recovery_conformance"])
def test_replay_gives_the_expected_entries_and_states(request: Any, which: str, jobs: int) -> None:
    """The `impact/` set, and the `recovery/` set with the sixth dimension."""
    sample = request.getfixturevalue(which)
    result = replay_file(
        sample.events_path,
        sample.rules,
        currencies=sample.rates.rates,
        jobs=jobs,
        parallel_from_bytes=0,
        impact=True,
    )
    assert result.impact is not None
    assert impact_mismatches(sample.expected_impact, result.impact) == []
    states = {s["customer_id"]: s for s in map(orjson.loads, result.lines)}
    assert set(states) == set(sample.expected_states)
    problems = [
        p for cid, want in sample.expected_states.items() for p in state_mismatches(want, states[cid])
    ]
    assert problems == []
    if which == "impact_conformance":
        # The set holds keys that must survive as they are: `/`, spaces and non-ASCII.
        keys = {entry["key"] for entry in result.impact}
        assert "b2b/enterprise" in keys and "été 2026" in keys
    else:
        # All three keys, and customers without a SMOT touchpoint (in no recovery entry).
        assert {s["recovery"] for s in states.values()} == {None, "smooth", "recovered", "unrecovered"}


def test_the_file_order_does_not_matter(impact_conformance: Any, tmp_path: Path) -> None:
    lines = list(impact_conformance.raw_lines)
    random.Random(5).shuffle(lines)
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_bytes(b"\n".join(lines + lines[:40]) + b"\n")
    result = replay_file(
        shuffled, impact_conformance.rules, currencies=impact_conformance.rates.rates, impact=True
    )
    assert result.impact is not None
    assert impact_mismatches(impact_conformance.expected_impact, result.impact) == []


# Worked examples ------------------------------------------------------------------------


def _customer(
    cid: str,
    *,
    ppp: str,
    cltv: str,
    csat: str,
    campaigns: set[str] | None = None,
    moments: list[int] | None = None,
) -> CustomerState:
    return CustomerState(
        cid,
        version=1,
        surveys=1,
        moments=moments or [1, 0, 0, 0],
        ppp=Decimal(ppp),
        cltv=Decimal(cltv),
        csat=Decimal(csat),
        campaigns=campaigns or set(),
        channels={"web"},
    )


def test_linear_attribution_rounds_each_share_half_even_to_six_decimals() -> None:
    # 0.02 over three keys is 0.006666...: each share 0.006667.
    state = _customer("c-1", ppp="0.02", cltv="0.01", csat="2.00", campaigns={"a", "b", "c"})
    changes: dict[str, int] = {}
    add_change(changes, None, contribution(state))
    assert unpack(changes["campaign/a"])[11:13] == [6667, 3333]
    assert unpack(changes[ALL_KEY])[11:13] == [20000, 10000]
    # Half-even at the sixth decimal: 0.000005 / 2 = 0.0000025 -> 0.000002.
    assert (
        entry_message("campaign/x", [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 5000, 0, 0, 0])["attributed_cltv"]
        == 0.0
    )
    assert (
        entry_message("campaign/x", [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15000, 5000, 0, 0, 0])["attributed_ppp"]
        == 0.02
    )


def test_comparisons_against_the_customers_outside_the_key() -> None:
    states = [
        _customer("c-1", ppp="80.00", cltv="10.00", csat="8.00", campaigns={"spring"}),
        _customer("c-2", ppp="0.00", cltv="0.00", csat="6.00", campaigns=set()),
        _customer("c-3", ppp="45.00", cltv="5.00", csat="9.00", campaigns=set()),
    ]
    report = {(e["dimension"], e["key"]): e for e in impact_report(contribution(s) for s in states)}
    everyone, spring = report[("all", "*")], report[("campaign", "spring")]
    assert everyone["mean_ppp"] == 41.67 and everyone["conversion"] == 0.6667
    assert everyone["k_factor"] is None  # nobody shared
    # Outside: c-2 and c-3, mean PPP 22.5, conversion 0.5, mean CSAT 7.5.
    assert spring["ppp_uplift"] == round(80 / 22.5 - 1, 4)
    assert spring["conversion_uplift"] == 1.0
    assert spring["csat_uplift"] == round(8 / 7.5 - 1, 4)
    assert spring["past_six_percent"] is True and spring["harms_experience"] is False


def test_an_entry_that_is_everyone_has_no_uplift_and_raises_no_flag() -> None:
    state = _customer("c-1", ppp="10.00", cltv="5.00", csat="2.00", campaigns={"only"})
    entry = {(e["dimension"], e["key"]): e for e in impact_report([contribution(state)])}[
        ("campaign", "only")
    ]
    assert (entry["ppp_uplift"], entry["conversion_uplift"], entry["csat_uplift"]) == (None, None, None)
    assert entry["past_six_percent"] is False and entry["harms_experience"] is False


def test_converts_but_satisfies_less_is_flagged() -> None:
    states = [
        _customer("c-1", ppp="10.00", cltv="5.00", csat="2.00", campaigns={"push"}),
        _customer("c-2", ppp="0.00", cltv="0.00", csat="9.00", campaigns=set()),
    ]
    push = next(e for e in impact_report(contribution(s) for s in states) if e["key"] == "push")
    assert push["conversion_uplift"] is None  # the others never bought: no ratio to compare to
    states.append(_customer("c-3", ppp="27.00", cltv="3.00", csat="9.00", campaigns=set()))
    push = next(e for e in impact_report(contribution(s) for s in states) if e["key"] == "push")
    assert push["conversion_uplift"] == 1.0 and push["csat_uplift"] < 0
    assert push["harms_experience"] is True


def test_keys_split_at_the_first_slash_only() -> None:
    assert split_key("campaign/b2b/enterprise") == ("campaign", "b2b/enterprise")
    assert entry_message("campaign/a/b%20c", [0] * 16)["key"] == "a/b%20c"


def test_a_change_delivered_again_is_not_counted_twice() -> None:
    entry = ImpactEntry()
    one = decode_change(encode_change(pack([1] * 16)))
    assert apply_change(entry, one, offset=4)
    assert not apply_change(entry, one, offset=4)
    assert not apply_change(entry, pack([5] * 16), offset=3)
    assert apply_change(entry, one, offset=9)
    assert unpack(entry.sums) == [2] * 16
    assert decode_entry(encode_entry(entry)) == entry
    # A negative change (a customer leaving an entry) survives the wire too.
    assert unpack(decode_change(encode_change(pack([-1, 0, -(2**90), *[3] * 13])))) == [
        -1,
        0,
        -(2**90),
        *[3] * 13,
    ]
    with pytest.raises(ValueError, match="bytes"):
        decode_change(b"[1, 2, 3]")


# Properties -----------------------------------------------------------------------------


@st.composite
def impact_world(draw: st.DrawFn) -> list[Event]:
    """A few customers' events, and ZMOT touchpoints of theirs naming each other's shares."""
    events: list[Event] = []
    for index in range(draw(st.integers(1, 4))):
        events += draw(customer_events(customer_id=f"c-{index}", max_size=8))
    customers = sorted({e.customer_id for e in events})
    shares = [e for e in events if isinstance(e, Share)]
    for index in range(draw(st.integers(0, 6)) if shares else 0):
        share = draw(st.sampled_from(shares))
        events.append(
            Touchpoint(
                event_id=f"ref-{index}",
                customer_id=draw(st.sampled_from(customers)),
                occurred_at=share.occurred_at + timedelta(hours=draw(st.integers(-5, 50))),
                moment="zmot",
                channel="friend",
                campaign=draw(st.none() | st.sampled_from(["spring", "b2b/x"])),
                referral_share_id=share.share_id,
            )
        )
    return events


def _replayed(events: list[Event]) -> dict[str, list[int]]:
    """The entries' exact sums the way `journey replay` reaches them: fold, join, link."""
    states: dict[str, CustomerState] = {}
    joins: dict[str, ShareJoin] = {}
    links: list[dict[str, Any]] = []
    for event in events:
        state = states.setdefault(event.customer_id, CustomerState(event.customer_id))
        if apply_event(state, event, RULES).duplicate:
            continue
        sighting = sighting_for(event)
        if sighting is not None:
            join = joins.setdefault(sighting["share_id"], ShareJoin(sighting["share_id"]))
            links += apply_sighting(join, sighting).links
    for link in links:
        apply_link(states[link["referred_id"]], link)
    totals: dict[str, int] = {}
    for state in states.values():
        add_change(totals, None, contribution(state))
    return {key: unpack(sums) for key, sums in totals.items()}


def _streamed(events: list[Event], rng: random.Random) -> dict[str, list[int]]:
    """The way workers reach them: each event or late link notice moves one customer's
    contribution, and only the change of it is added (in random batches) to the entries."""
    states: dict[str, CustomerState] = {}
    joins: dict[str, ShareJoin] = {}
    notices: list[dict[str, Any]] = []
    entries: dict[str, int] = {}
    todo = list(events)
    while todo or notices:
        batch: dict[str, int] = {}
        for _ in range(rng.randint(1, 4)):
            if notices and (not todo or rng.random() < 0.4):
                link = notices.pop(rng.randrange(len(notices)))
                state = states[link["referred_id"]]
                before = contribution(state)
                apply_link(state, link)
                add_change(batch, before, contribution(state))
                continue
            if not todo:
                break
            event = todo.pop(0)
            state = states.setdefault(event.customer_id, CustomerState(event.customer_id))
            before = contribution(state)
            apply_event(state, event, RULES)
            add_change(batch, before, contribution(state))
            sighting = sighting_for(event)
            if sighting is not None:  # duplicates too, as a worker sends them
                join = joins.setdefault(sighting["share_id"], ShareJoin(sighting["share_id"]))
                made = apply_sighting(join, sighting).links
                notices += made + [link for link in made if rng.random() < 0.3]  # some twice
        for key, change in batch.items():
            entries[key] = entries.get(key, 0) + change
    return {key: unpack(sums) for key, sums in entries.items() if sums}


@PROFILE
@given(st.data())
def test_streamed_changes_add_up_to_the_replayed_entries(data: st.DataObject) -> None:
    events = data.draw(impact_world())
    delivered = data.draw(deliveries(events))
    streamed = _streamed(delivered, random.Random(data.draw(st.integers(0, 2**16))))
    assert streamed == _replayed(events)


@PROFILE
@given(st.data())
def test_any_order_and_duplicates_give_the_same_entries(data: st.DataObject) -> None:
    events = data.draw(impact_world())
    assert _replayed(data.draw(deliveries(events))) == _replayed(events)


@PROFILE
@given(st.data())
def test_attributed_sums_of_a_dimension_are_what_its_customers_are_worth(data: st.DataObject) -> None:
    entries = _replayed(data.draw(impact_world()))
    everyone = entries["all/*"]
    for dimension in ("campaign", "channel", "referrer", "referral_channel"):
        mine = [sums for key, sums in entries.items() if split_key(key)[0] == dimension]
        if not mine:
            continue
        # Each customer's shares add up to its value give or take half a millionth per key.
        slack = sum(sums[0] for sums in mine)
        for position, whole in ((11, 8), (12, 9)):
            attributed = sum(sums[position] for sums in mine)
            assert attributed <= everyone[whole] * 10_000 + slack
        # Never more than everyone in the `all` entry, at the published two decimals.
        published = [
            entry_message(key, sums) for key, sums in entries.items() if split_key(key)[0] == dimension
        ]
        assert sum(Decimal(repr(e["attributed_ppp"])) for e in published) <= Decimal(
            repr(entry_message("all/*", everyone)["ppp"])
        ) + Decimal("0.005") * len(published)


def test_with_comparisons_reads_published_floats_exactly() -> None:
    entry = entry_message("campaign/a", [3, 1, 1, 0, 1, 0, 0, 0, 10, 10, 10, 100000, 100000, 0, 0, 0])
    everyone = entry_message(ALL_KEY, [6, 3, 2, 0, 1, 0, 0, 0, 40, 40, 20, 400000, 400000, 0, 0, 0])
    out = with_comparisons(entry, everyone)
    # Inside: 0.10 / 3 customers; outside: 0.30 / 3.
    assert out["ppp_uplift"] == round(1 / 3 - 1, 4)
    assert out["conversion_uplift"] == -0.5


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(-(2**100), 2**100), min_size=16, max_size=16),
    st.lists(st.integers(-(2**100), 2**100), min_size=16, max_size=16),
)
def test_packed_sums_add_digit_by_digit_and_come_back_exactly(a: list[int], b: list[int]) -> None:
    assert unpack(pack(a)) == a
    assert unpack(pack(a) + pack(b)) == [x + y for x, y in zip(a, b, strict=True)]
    assert unpack(pack(a) - pack(b)) == [x - y for x, y in zip(a, b, strict=True)]


def test_onward_counts_customers_who_reached_a_moment_and_the_one_before() -> None:
    """The circle's arrows: of the customers at a moment, the share who also reached the
    next one, at most 1 (SMOT repeats and takes customers who skipped FMOT, which a ratio
    of the two counts took for more than everyone)."""
    states = [
        _customer("a", ppp="1.00", cltv="1.00", csat="5.00", moments=[1, 1, 3, 0]),
        _customer("b", ppp="1.00", cltv="1.00", csat="5.00", moments=[1, 0, 2, 1]),
        _customer("c", ppp="1.00", cltv="1.00", csat="5.00", moments=[0, 0, 4, 1]),
    ]
    everyone = next(e for e in impact_report(map(contribution, states)) if e["dimension"] == "all")
    assert everyone["moments"] == {"zmot": 2, "fmot": 1, "smot": 3, "umot": 2}
    assert everyone["moments_onward"] == {"fmot": 1, "smot": 1, "umot": 2}
    assert circle(everyone)["onward"] == {"fmot": 0.5, "smot": 1.0, "umot": 0.6667}


def test_an_entry_of_format_1_reads_with_its_onward_sums_unknown() -> None:
    old = orjson.dumps([1, [3, 1, 1, 0, 2, 1, 3, 2, 300, 300, 1500, 3000000, 3000000], 7, 41])
    entry = decode_entry(old)
    assert (entry.version, entry.applied, entry.onward_known) == (7, 41, False)
    assert unpack(entry.sums)[:13] == [3, 1, 1, 0, 2, 1, 3, 2, 300, 300, 1500, 3000000, 3000000]
    message = entry_message(ALL_KEY, unpack(entry.sums), entry.version, onward_known=entry.onward_known)
    assert message["moments_onward"] is None
    assert circle(message)["onward"] == {"fmot": None, "smot": None, "umot": None}
    again = decode_entry(encode_entry(entry))
    assert again == entry  # format 2 keeps that it is not known
    # A change written by the release before (13 digits) reads as the same sums.
    old_change = pack([1] * 13 + [0] * 3)
    assert decode_change(old_change.to_bytes(13 * 16 + 1, "little", signed=True)) == old_change
