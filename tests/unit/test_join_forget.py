"""Share joins that forget an erased customer (`journey.referrals.forget`): whatever the order
of sightings and erasures, the links sent and not retracted are exactly those the surviving
sightings make, each once."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from journey.referrals import (
    ShareJoin,
    apply_sighting,
    decode_join,
    encode_join,
    forget,
    forget_person,
    join_all,
    rename,
)

_CUSTOMERS = ["a", "b", "c", "d"]


def _sighting(kind: str, share: str, customer: str, at: int, number: int) -> dict[str, Any]:
    sighting = {"kind": kind, "share_id": share, "customer_id": customer, "at": at, "event_id": f"e-{number}"}
    if kind == "share":
        sighting["channel"] = f"ch-{customer}"
    return sighting


_SIGHTINGS = st.lists(
    st.tuples(
        st.sampled_from(["share", "zmot", "zmot"]),
        st.sampled_from(["s-1", "s-2"]),
        st.sampled_from(_CUSTOMERS),
        st.integers(0, 9),
    ),
    max_size=14,
).map(lambda drawn: [_sighting(*fields, number) for number, fields in enumerate(drawn)])
_ERASURES = st.lists(st.tuples(st.sampled_from(_CUSTOMERS), st.integers(-1, 9)), max_size=3)


def _pair(link: dict[str, Any]) -> tuple[str, str, str]:
    return (link["share_id"], link["referrer_id"], link["referred_id"])


@given(_SIGHTINGS, _ERASURES, st.randoms(), st.booleans())
@settings(max_examples=400, deadline=None)
def test_links_sent_and_not_retracted_are_those_the_survivors_make(
    sightings: list[dict[str, Any]], erasures: list[tuple[str, int]], chooser: random.Random, reencode: bool
) -> None:
    # One share per id (SPEC: a share_id is unique per share); repeats of one sighting allowed.
    shares: dict[str, str] = {}
    sightings = [
        s
        for s in sightings
        if s["kind"] != "share" or shares.setdefault(s["share_id"], s["event_id"]) == s["event_id"]
    ]
    horizons: dict[str, int] = {}
    for customer, horizon in erasures:
        horizons[customer] = max(horizon, horizons.get(customer, horizon))
    # The stream: the sightings, some twice, with each erasure somewhere among them. A
    # sighting erased before it arrives never reaches the join (the customer's partition
    # drops it); one that arrived before is forgotten when the erasure reaches the join.
    repeats = chooser.sample(sightings, len(sightings) // 2)
    stream: list[tuple[str, Any]] = [("sighting", s) for s in sightings + repeats]
    for customer, horizon in erasures:
        stream.insert(chooser.randint(0, len(stream)), ("erase", (customer, horizon)))
    if chooser.random() < 0.3:
        chooser.shuffle(stream)
    joins: dict[str, ShareJoin] = {}
    applied: dict[str, int] = {}
    sent: Counter[tuple[str, str, str]] = Counter()
    delivered: set[str] = set()
    for kind, item in stream:
        if kind == "erase":
            customer, horizon = item
            applied[customer] = max(horizon, applied.get(customer, horizon))
            for share_id, join in joins.items():
                result = forget(join, customer, applied[customer])
                sent.subtract(_pair(link) for link in result.retracted)
                sent.update(_pair(link) for link in result.links)
                joins[share_id] = decode_join(encode_join(join)) if reencode else join
            continue
        # The customer's partition drops what it knows to be erased; a sighting it sent
        # before the erasure may still reach the join again after it (a redelivery).
        redelivered = item["event_id"] in delivered and chooser.random() < 0.5
        if item["at"] <= applied.get(item["customer_id"], -2) and not redelivered:
            continue
        delivered.add(item["event_id"])
        join = joins.get(item["share_id"]) or ShareJoin(item["share_id"])
        sent.update(_pair(link) for link in apply_sighting(join, item).links)
        joins[item["share_id"]] = decode_join(encode_join(join)) if reencode else join
    surviving = [s for s in sightings if s["at"] > horizons.get(s["customer_id"], -2)]
    expected = Counter(_pair(link) for link in join_all(surviving))
    assert +sent == expected
    assert all(count >= 0 for count in sent.values())


def test_a_retracted_link_is_made_again_from_a_touchpoint_that_survives() -> None:
    join = ShareJoin("s-1")
    apply_sighting(join, _sighting("share", "s-1", "a", 0, 1))
    (first,) = apply_sighting(join, _sighting("zmot", "s-1", "b", 2, 2)).links
    assert apply_sighting(join, _sighting("zmot", "s-1", "b", 5, 3)).links == []
    result = forget(join, "b", 3)
    assert result.retracted == [{"share_id": "s-1", "referrer_id": "a", "referred_id": "b"}]
    (again,) = result.links
    assert (first["touchpoint_event_id"], again["touchpoint_event_id"]) == ("e-2", "e-3")
    assert forget(join, "b", 3).retracted == []  # a repeated forget changes nothing


def test_an_erased_share_retracts_its_links_and_its_touchpoints_wait_again() -> None:
    join = ShareJoin("s-1")
    apply_sighting(join, _sighting("zmot", "s-1", "b", 2, 2))
    apply_sighting(join, _sighting("share", "s-1", "a", 0, 1))
    result = forget(join, "a", 0)
    assert [link["referred_id"] for link in result.retracted] == ["b"]
    assert join.share is None and "e-2" in join.touchpoints and not join.is_empty()
    assert forget(join, "b", 9).retracted == [] and not join.touchpoints
    # Delivered again after the erasure, the erased share stays forgotten.
    assert apply_sighting(join, _sighting("share", "s-1", "a", 0, 1)).links == []
    assert join.share is None


def test_a_join_recorded_in_the_older_form_is_read() -> None:
    older = b'{"s":"s-1","sh":["a","web",0,"e-1"],"p":[],"l":["b"],"x":[]}'
    join = decode_join(older)
    assert join.linked == {"b": ""}
    assert forget(join, "b", 5).retracted == [{"share_id": "s-1", "referrer_id": "a", "referred_id": "b"}]


_PERSON = ["a1", "a2"]  # one person: a2 goes by a1 once merged


@given(
    _SIGHTINGS.map(
        lambda drawn: [
            {**s, "customer_id": {"a": "a1", "d": "a2"}.get(s["customer_id"], s["customer_id"])}
            for s in drawn
        ]
    ),
    st.integers(-1, 9),
    st.randoms(),
    st.booleans(),
)
@settings(max_examples=400, deadline=None)
def test_a_person_forgotten_gives_each_id_its_later_sightings_back(
    sightings: list[dict[str, Any]], horizon: int, chooser: random.Random, reencode: bool
) -> None:
    """Sightings before a merge, while merged (sent under the person, with their own id), and
    after the person's erasure (under their own id, the erased ones dropped at the partition):
    the links sent and not retracted are those the surviving sightings make, each id a person
    of its own, each link once (`journey.referrals.forget_person`)."""
    shares: dict[str, str] = {}
    sightings = [
        s
        for s in sightings
        if s["kind"] != "share" or shares.setdefault(s["share_id"], s["event_id"]) == s["event_id"]
    ]
    cuts = sorted(chooser.randint(0, len(sightings)) for _ in range(2))
    joins: dict[str, ShareJoin] = {}
    sent: Counter[tuple[str, str, str]] = Counter()

    def join_of(share_id: str) -> ShareJoin:
        join = joins.setdefault(share_id, ShareJoin(share_id))
        if reencode:
            join = joins[share_id] = decode_join(encode_join(join))
        return join

    def take(links: list[dict[str, Any]], retracted: list[dict[str, str]] = []) -> None:  # noqa: B006
        sent.update(_pair(link) for link in links)
        sent.subtract(_pair(link) for link in retracted)

    for s in sightings[: cuts[0]]:
        take(apply_sighting(join_of(s["share_id"]), s).links)
    for share_id in list(joins):
        renamed = rename(join_of(share_id), _PERSON, "a1", 2)
        take(renamed.links, renamed.retracted)
    for s in sightings[cuts[0] : cuts[1]]:
        if s["customer_id"] in _PERSON:
            s = {**s, "customer_id": "a1", "id": s["customer_id"]}
        take(apply_sighting(join_of(s["share_id"]), s).links)
    for share_id in list(joins):
        forgotten = forget_person(join_of(share_id), _PERSON, horizon)
        take(forgotten.links, forgotten.retracted)
    survivors = [s for s in sightings if s["customer_id"] not in _PERSON or s["at"] > horizon]
    for s in sightings[cuts[1] :]:
        if s in survivors:
            take(apply_sighting(join_of(s["share_id"]), s).links)
    assert all(count in (0, 1) for count in sent.values()), sent
    assert +sent == Counter(_pair(link) for link in join_all(survivors))
