"""Joining a share (UMOT) with the ZMOT touchpoints that name it: the referral links.

Pure like the scoring core: a share's join state plus one sighting gives the new state and
the links to emit. Sightings may come in any order and any number of times; each
(share_id, referred_id) links once, and each self-referring touchpoint counts once. A link
then reaches the referred customer's state (`apply_link`), where it gives the customer its
`referrer` and `referral_channel` impact keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from journey.customer import CustomerState, format_us, to_us
from schemas.events import Event, Share, Touchpoint

__all__ = [
    "ForgetResult",
    "JoinResult",
    "ShareJoin",
    "apply_link",
    "apply_sighting",
    "decode_join",
    "encode_join",
    "forget",
    "forget_person",
    "join_all",
    "rename",
    "sighting_for",
    "take_referral",
]


def sighting_for(event: Event) -> dict[str, Any] | None:
    """What the share join needs of an event, or None if it takes no part in a link."""
    if isinstance(event, Share):
        return {
            "kind": "share",
            "share_id": event.share_id,
            "customer_id": event.customer_id,
            "channel": event.channel,
            "at": to_us(event.occurred_at),
            "event_id": event.event_id,
        }
    if isinstance(event, Touchpoint) and event.moment == "zmot" and event.referral_share_id:
        return {
            "kind": "zmot",
            "share_id": event.referral_share_id,
            "customer_id": event.customer_id,
            "at": to_us(event.occurred_at),
            "event_id": event.event_id,
        }
    return None


@dataclass(slots=True)
class ShareJoin:
    """Everything known about one share_id.

    Every ZMOT touchpoint that names the share is kept, linked or not, so that an erasure
    can take some of them back and the link be made again from one that survives."""

    share_id: str
    # (referrer_id, channel, shared_at_us, event_id) once the share itself was seen.
    share: tuple[str, str, int, str] | None = None
    # Every ZMOT touchpoint naming the share: event_id -> (referred_id, at_us).
    touchpoints: dict[str, tuple[str, int]] = field(default_factory=dict)
    # Referred customers linked so far -> the event_id of the touchpoint that made the link
    # ("" for a link recorded by a worker before touchpoints were kept).
    linked: dict[str, str] = field(default_factory=dict)
    self_referrals: set[str] = field(default_factory=set)
    # Erased customers -> their horizon: a sighting of theirs at or before it, delivered
    # again after the erasure (a redelivery after a crash), stays forgotten.
    forgotten: dict[str, int] = field(default_factory=dict)
    # Ids of persons of several ids (SPEC.md, "Identity") -> (the id their person goes by,
    # the version of the person's record that said so): a sighting sent under an id before
    # the join heard of its merge is taken as the person's, and of two renames arriving in
    # either order the newer wins (a person's record only grows).
    renamed: dict[str, tuple[str, int]] = field(default_factory=dict)
    # The number of the latest message sent to a referred person (`numbered`): a person
    # keeps the newest it took of each share (`take_referral`).
    sent: int = 0
    # The id each sighting came under, where it is not the person it is kept under (a
    # person of several ids): touchpoints by event_id, and the share's. The erasure of a
    # person gives each id its sightings back (`forget_person`).
    origins: dict[str, str] = field(default_factory=dict)
    share_origin: str | None = None

    def origin(self, event_id: str) -> str:
        """The id a kept touchpoint came under."""
        return self.origins.get(event_id) or self.touchpoints[event_id][0]

    def numbered(self, message: dict[str, Any]) -> dict[str, Any]:
        """A message to a referred person (a link, or an unlink), numbered after the last."""
        self.sent += 1
        return {**message, "seq": self.sent}

    def is_empty(self) -> bool:
        return (
            self.share is None
            and not self.touchpoints
            and not self.linked
            and not self.forgotten
            and not self.renamed
            and not self.sent  # its numbers go on (`numbered`)
        )

    def person(self, customer_id: str) -> str:
        """The id a customer's person goes by now, as far as this join has heard."""
        seen = {customer_id}
        while customer_id in self.renamed:
            customer_id = self.renamed[customer_id][0]
            if customer_id in seen:  # canonical itself (or a loop, which a newer rename ends)
                break
            seen.add(customer_id)
        return customer_id


@dataclass(frozen=True, slots=True)
class JoinResult:
    links: list[dict[str, Any]]
    self_referrals: int


@dataclass(frozen=True, slots=True)
class ForgetResult:
    """What forgetting a customer's sightings did to a join: the links it takes back
    (`share_id`, `referrer_id`, `referred_id`, as `erasure-log` lists them) and the links
    made again from a touchpoint that survives."""

    retracted: list[dict[str, str]]
    links: list[dict[str, Any]]


def _link(join: ShareJoin, referred_id: str, event_id: str, at: int) -> dict[str, Any]:
    assert join.share is not None
    referrer, channel, shared_at, _ = join.share
    return {
        "share_id": join.share_id,
        "referrer_id": referrer,
        "referred_id": referred_id,
        "share_channel": channel,
        "shared_at": format_us(shared_at),
        "discovered_at": format_us(at),
        "touchpoint_event_id": event_id,
        "latency_seconds": (at - shared_at) / 1_000_000,
    }


def _resolve(join: ShareJoin, referred_id: str, event_id: str, at: int) -> tuple[dict[str, Any] | None, int]:
    """A touchpoint meets the known share: a link, a self-referral, or nothing new."""
    assert join.share is not None
    if referred_id == join.share[0]:
        if event_id in join.self_referrals:
            return None, 0
        join.self_referrals.add(event_id)
        return None, 1
    if referred_id in join.linked:
        return None, 0
    join.linked[referred_id] = event_id
    return _link(join, referred_id, event_id, at), 0


def _in_time_order(touchpoints: dict[str, tuple[str, int]]) -> list[tuple[str, tuple[str, int]]]:
    # Event time, then event_id: which touchpoint of a customer makes the link then does
    # not depend on the order the touchpoints came in.
    return sorted(touchpoints.items(), key=lambda item: (item[1][1], item[0]))


def _link_waiting(join: ShareJoin) -> tuple[list[dict[str, Any]], int]:
    links: list[dict[str, Any]] = []
    selfs = 0
    for event_id, (referred_id, at) in _in_time_order(join.touchpoints):
        link, counted = _resolve(join, referred_id, event_id, at)
        selfs += counted
        if link is not None:
            links.append(link)
    return links, selfs


def apply_sighting(join: ShareJoin, sighting: dict[str, Any]) -> JoinResult:
    """Fold one sighting (from `sighting_for`) into the join of its share_id, in place.
    `customer_id` is the person the sender knew; `id`, if present, the event's own id."""
    origin = sighting.get("id") or sighting["customer_id"]
    for customer_id in {sighting["customer_id"], origin}:
        if sighting["at"] <= join.forgotten.get(customer_id, sighting["at"] - 1):
            return JoinResult([], 0)  # erased
    if join.renamed:
        sighting = {**sighting, "customer_id": join.person(sighting["customer_id"])}
    if sighting["kind"] == "share":
        if join.share is not None:
            return JoinResult([], 0)  # the first share with this id wins
        join.share = (sighting["customer_id"], sighting["channel"], sighting["at"], sighting["event_id"])
        join.share_origin = origin if origin != sighting["customer_id"] else None
        return JoinResult(*_link_waiting(join))
    referred_id, event_id, at = sighting["customer_id"], sighting["event_id"], sighting["at"]
    if event_id in join.touchpoints:
        return JoinResult([], 0)  # the same touchpoint again
    join.touchpoints[event_id] = (referred_id, at)
    if origin != referred_id:
        join.origins[event_id] = origin
    if join.share is None:
        return JoinResult([], 0)
    link, selfs = _resolve(join, referred_id, event_id, at)
    return JoinResult([link] if link else [], selfs)


def forget(join: ShareJoin, customer_id: str, horizon_us: int) -> ForgetResult:
    """Forget, in place, the sightings of `customer_id` at or before `horizon_us` (an
    erasure): the share if it was the customer's, and its touchpoints naming the share.

    Afterwards the join is what the surviving sightings make, whatever their order: a link
    whose share or touchpoint is gone is retracted; a referred customer whose linking
    touchpoint is gone but who has another one that survives is linked again from it."""
    retracted: list[dict[str, str]] = []
    join.forgotten[customer_id] = max(horizon_us, join.forgotten.get(customer_id, horizon_us))
    share = join.share
    if share is not None and share[0] == customer_id and share[2] <= horizon_us:
        retracted = [
            {"share_id": join.share_id, "referrer_id": customer_id, "referred_id": referred}
            for referred in sorted(join.linked)
        ]
        join.share = None
        join.share_origin = None
        join.linked.clear()
        join.self_referrals.clear()
        share = None
    gone = {
        event_id
        for event_id, (referred, at) in join.touchpoints.items()
        if referred == customer_id and at <= horizon_us
    }
    for event_id in gone:
        del join.touchpoints[event_id]
        join.origins.pop(event_id, None)
    join.self_referrals -= gone
    made = join.linked.get(customer_id)
    if share is None or made is None or (made and made not in gone):
        return ForgetResult(retracted, [])
    # A link recorded before touchpoints were kept ("") has no known touchpoint: it goes
    # when none of the customer's touchpoints survives.
    if made == "" and any(referred == customer_id for referred, _ in join.touchpoints.values()):
        return ForgetResult(retracted, [])
    del join.linked[customer_id]
    retracted.append({"share_id": join.share_id, "referrer_id": share[0], "referred_id": customer_id})
    links: list[dict[str, Any]] = []
    for event_id, (referred, at) in _in_time_order(join.touchpoints):
        if referred == customer_id:
            link, _ = _resolve(join, referred, event_id, at)
            if link is not None:
                links.append(link)
            break
    return ForgetResult(retracted, links)


def rename(join: ShareJoin, ids: list[str], new: str, version: int) -> ForgetResult:
    """The person of `ids` goes by `new` (a merge, SPEC.md "Identity"; `version` grows with
    the person's record): in place, the links sent under an id the person no longer goes by
    are retracted, the join's records renamed, and the links the renamed join makes
    returned, to be sent once. A person reached by its own share under another id makes no
    link. Renames may arrive in any order and more than once: the newest one wins."""
    for customer_id in ids:
        known = join.renamed.get(customer_id)
        if known is None or version > known[1]:
            join.renamed[customer_id] = (new, version)
    retracted: list[dict[str, str]] = []
    share = join.share
    if share is not None and join.person(share[0]) != share[0]:
        retracted += [
            {"share_id": join.share_id, "referrer_id": share[0], "referred_id": referred}
            for referred in sorted(join.linked)
        ]
        join.linked.clear()
        join.self_referrals.clear()
        join.share_origin = join.share_origin or share[0]
        join.share = (join.person(share[0]), *share[1:])
    elif share is not None:
        for referred in sorted(join.linked):
            if join.person(referred) != referred:
                retracted.append(
                    {"share_id": join.share_id, "referrer_id": share[0], "referred_id": referred}
                )
                del join.linked[referred]
    for event_id, (referred, at) in list(join.touchpoints.items()):
        person = join.person(referred)
        if person != referred:
            join.origins.setdefault(event_id, referred)
            join.touchpoints[event_id] = (person, at)
    if join.share is None:
        return ForgetResult(retracted, [])
    links, _ = _link_waiting(join)
    return ForgetResult(retracted, links)


def forget_person(
    join: ShareJoin, ids: list[str], horizon_us: int, erased: list[str] | None = None
) -> ForgetResult:
    """A person of `ids` comes apart (an erasure, SPEC.md "Erasure"): in place, the sightings
    of the ids in `erased` (all of `ids` by default) at or before `horizon_us` are forgotten,
    and each id takes its other sightings back as a person of its own (the identify events
    that join them again make it a person of several ids again, with their renames).

    Afterwards the join is what the surviving sightings make: links whose share or
    touchpoint is gone, or whose referrer or referred person is now another, are retracted;
    the links the surviving sightings make are returned, to be sent once."""
    given = set(ids)
    gone = given if erased is None else set(erased)
    for customer_id in gone:
        join.forgotten[customer_id] = max(horizon_us, join.forgotten.get(customer_id, horizon_us))
    for customer_id in given:
        join.renamed.pop(customer_id, None)
    before = join.share
    linked = dict(join.linked)
    if before is not None:
        origin = join.share_origin or before[0]
        if origin in gone and before[2] <= horizon_us:
            join.share, join.share_origin = None, None
        elif origin in given:
            person = join.person(origin)
            join.share = (person, *before[1:])
            join.share_origin = origin if origin != person else None
    for event_id, (_, at) in list(join.touchpoints.items()):
        origin = join.origin(event_id)
        if origin not in given:
            continue
        if origin in gone and at <= horizon_us:
            del join.touchpoints[event_id]
            join.origins.pop(event_id, None)
        else:
            person = join.person(origin)
            join.touchpoints[event_id] = (person, at)
            if person == origin:
                join.origins.pop(event_id, None)
    retracted: list[dict[str, str]] = []
    if before is not None and (join.share is None or join.share[0] != before[0]):
        retracted = [
            {"share_id": join.share_id, "referrer_id": before[0], "referred_id": referred}
            for referred in sorted(linked)
        ]
        join.linked.clear()
    elif before is not None:
        persons = {referred for referred, _ in join.touchpoints.values()}
        for referred, made in sorted(linked.items()):
            kept = join.touchpoints.get(made) if made else None
            if (kept is not None and kept[0] == referred) or (not made and referred in persons):
                continue
            del join.linked[referred]
            retracted.append({"share_id": join.share_id, "referrer_id": before[0], "referred_id": referred})
    join.self_referrals = (
        set()
        if join.share is None
        else {event_id for event_id, (referred, _) in join.touchpoints.items() if referred == join.share[0]}
    )
    if join.share is None:
        return ForgetResult(retracted, [])
    links, _ = _link_waiting(join)
    return ForgetResult(retracted, links)


def apply_link(state: CustomerState, link: dict[str, Any]) -> bool:
    """Give the referred customer's state the link's referrer and share channel (in place).
    A link is known by its share (one per (share_id, referred_id)): a repeat changes nothing."""
    share_id = link["share_id"]
    if share_id in state.referrals:
        return False
    state.referrals[share_id] = (link["referrer_id"], link["share_channel"])
    state.entry_keys = None
    return True


def take_referral(state: CustomerState, message: dict[str, Any], referral: tuple[str, str] | None) -> bool:
    """A share join's numbered message to its referred person (in place): the share now
    gives the person `referral` (referrer_id, share_channel), or none. Messages of one join
    reach a person under several ids as its ids merge, by several routes, so they may come
    in any order: the one numbered highest wins, and one not newer changes nothing. A
    message without a number (sent before numbering) is a link that a repeat leaves alone,
    or an unlink. Returns whether the state must be stored."""
    share_id = message["share_id"]
    seq = message.get("seq")
    if seq is None:
        if referral is not None and share_id in state.referrals:
            return False
        stored = False
    elif seq <= state.referral_seqs.get(share_id, 0):
        return False
    else:
        state.referral_seqs[share_id] = seq
        stored = True
    if referral is None:
        if state.referrals.pop(share_id, None) is None:
            return stored
    elif state.referrals.get(share_id) == referral:
        return stored
    else:
        state.referrals[share_id] = referral
    state.entry_keys = None
    return True


def join_all(sightings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The links a list of sightings makes, joined in list order (`journey replay`)."""
    joins: dict[str, ShareJoin] = {}
    links: list[dict[str, Any]] = []
    for sighting in sightings:
        share_id = sighting["share_id"]
        join = joins.get(share_id)
        if join is None:
            join = joins[share_id] = ShareJoin(share_id)
        links += apply_sighting(join, sighting).links
    return links


def encode_join(join: ShareJoin) -> bytes:
    return orjson.dumps(
        {
            "s": join.share_id,
            "sh": join.share,
            "t": [[event_id, referred, at] for event_id, (referred, at) in join.touchpoints.items()],
            "k": sorted(join.linked.items()),
            "x": sorted(join.self_referrals),
            "f": join.forgotten,
            "r": join.renamed,
            "q": join.sent,
            "o": join.origins,
            "so": join.share_origin,
        }
    )


def decode_join(raw: bytes) -> ShareJoin:
    """A join's changelog record; also the older form, which kept only the touchpoints
    still waiting for their share ("p") and the linked customers without their touchpoint ("l")."""
    data = orjson.loads(raw)
    share = data["sh"]
    touchpoints = data["t"] if "t" in data else data["p"]
    linked = data["k"] if "k" in data else [(referred, "") for referred in data["l"]]
    return ShareJoin(
        share_id=data["s"],
        share=None if share is None else (share[0], share[1], int(share[2]), share[3]),
        touchpoints={event_id: (referred, int(at)) for event_id, referred, at in touchpoints},
        linked=dict(linked),
        self_referrals=set(data["x"]),
        forgotten=data.get("f", {}),
        renamed={customer_id: (new, version) for customer_id, (new, version) in data.get("r", {}).items()},
        sent=data.get("q", 0),
        origins=data.get("o", {}),
        share_origin=data.get("so"),
    )
