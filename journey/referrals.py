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
    "JoinResult",
    "ShareJoin",
    "apply_link",
    "apply_sighting",
    "decode_join",
    "encode_join",
    "join_all",
    "sighting_for",
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
    """Everything known about one share_id."""

    share_id: str
    # (referrer_id, channel, shared_at_us, event_id) once the share itself was seen.
    share: tuple[str, str, int, str] | None = None
    # ZMOT touchpoints seen before the share: event_id -> (referred_id, at_us).
    pending: dict[str, tuple[str, int]] = field(default_factory=dict)
    linked: set[str] = field(default_factory=set)
    self_referrals: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class JoinResult:
    links: list[dict[str, Any]]
    self_referrals: int


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
    join.linked.add(referred_id)
    return _link(join, referred_id, event_id, at), 0


def apply_sighting(join: ShareJoin, sighting: dict[str, Any]) -> JoinResult:
    """Fold one sighting (from `sighting_for`) into the join of its share_id, in place."""
    links: list[dict[str, Any]] = []
    selfs = 0
    if sighting["kind"] == "share":
        if join.share is not None:
            return JoinResult(links, 0)  # the first share with this id wins
        join.share = (sighting["customer_id"], sighting["channel"], sighting["at"], sighting["event_id"])
        # Touchpoints that were waiting link in event-time order, so the choice of which
        # touchpoint of a customer makes the link does not depend on arrival order.
        waiting = sorted(join.pending.items(), key=lambda item: (item[1][1], item[0]))
        join.pending.clear()
        for event_id, (referred_id, at) in waiting:
            link, counted = _resolve(join, referred_id, event_id, at)
            selfs += counted
            if link is not None:
                links.append(link)
        return JoinResult(links, selfs)
    referred_id, event_id, at = sighting["customer_id"], sighting["event_id"], sighting["at"]
    if join.share is None:
        join.pending[event_id] = (referred_id, at)
        return JoinResult(links, 0)
    link, selfs = _resolve(join, referred_id, event_id, at)
    return JoinResult([link] if link else [], selfs)


def apply_link(state: CustomerState, link: dict[str, Any]) -> bool:
    """Give the referred customer's state the link's referrer and share channel (in place).
    A link is known by its share (one per (share_id, referred_id)): a repeat changes nothing."""
    share_id = link["share_id"]
    if share_id in state.referrals:
        return False
    state.referrals[share_id] = (link["referrer_id"], link["share_channel"])
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
            "p": [[event_id, referred, at] for event_id, (referred, at) in join.pending.items()],
            "l": sorted(join.linked),
            "x": sorted(join.self_referrals),
        }
    )


def decode_join(raw: bytes) -> ShareJoin:
    data = orjson.loads(raw)
    share = data["sh"]
    return ShareJoin(
        share_id=data["s"],
        share=None if share is None else (share[0], share[1], int(share[2]), share[3]),
        pending={event_id: (referred, int(at)) for event_id, referred, at in data["p"]},
        linked=set(data["l"]),
        self_referrals=set(data["x"]),
    )
