"""Topic names: the public ones of SPEC.md and journey's own internal ones, with the prefix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["INPUT_TOPICS", "ORIGIN_HEADER", "TopicNames", "origin_of"]

# The header of a re-keyed event (`<app_id>-rekeyed`) that names the input topic it came on.
ORIGIN_HEADER = "journey-topic"

# Input topic -> the event type it carries.
INPUT_TOPICS: dict[str, str] = {
    "touchpoints": "touchpoint",
    "purchases": "purchase",
    "surveys": "survey",
    "shares": "share",
    "identities": "identify",
}

_TOPIC_OF_TYPE = {kind: topic for topic, kind in INPUT_TOPICS.items()}


def origin_of(record: Any, rekeyed: str) -> str:
    """The input topic a record came on: its own, or for a record of the re-keying topic
    (`rekeyed`) the one its ORIGIN_HEADER names (the re-keying topic itself if none)."""
    if record.topic == rekeyed:
        for name, value in record.headers or ():
            if name == ORIGIN_HEADER:
                return bytes(value).decode("utf-8")
    return str(record.topic)


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Every topic journey reads or writes, as named on the broker."""

    prefix: str = ""
    app_id: str = "journey"

    def public(self, base: str) -> str:
        return f"{self.prefix}{base}"

    def for_type(self, event_type: str) -> str:
        """The input topic that carries events of `event_type`."""
        return self.public(_TOPIC_OF_TYPE[event_type])

    @property
    def inputs(self) -> dict[str, str]:
        """Broker topic name -> event type."""
        return {self.public(base): kind for base, kind in INPUT_TOPICS.items()}

    @property
    def ppp_updates(self) -> str:
        return self.public("ppp-updates")

    @property
    def referral_links(self) -> str:
        return self.public("referral-links")

    @property
    def dead_letters(self) -> str:
        return self.public("dead-letters")

    @property
    def impact(self) -> str:
        return self.public("impact")

    @property
    def erasures(self) -> str:
        """Erasure requests, in (SPEC.md, "Erasure"), co-partitioned with the events."""
        return self.public("erasures")

    @property
    def erasure_log(self) -> str:
        return self.public("erasure-log")

    @property
    def merges(self) -> str:
        """What each identity merge did, out (SPEC.md, "Identity"), keyed by the canonical id."""
        return self.public("merges")

    @property
    def rekeyed(self) -> str:
        """Events that arrived under the wrong key or partition, re-keyed by customer_id."""
        return f"{self.prefix}{self.app_id}-rekeyed"

    @property
    def share_joins(self) -> str:
        """Shares and referred ZMOT touchpoints, keyed by share_id, to meet in one place."""
        return f"{self.prefix}{self.app_id}-share-joins"

    @property
    def referred(self) -> str:
        """Referral links, keyed by referred_id, on their way to the referred customer's state."""
        return f"{self.prefix}{self.app_id}-referred"

    @property
    def impact_changes(self) -> str:
        """Changes of impact entries, keyed by `dimension/key`, to be summed by their owner."""
        return f"{self.prefix}{self.app_id}-impact-changes"

    @property
    def leaders(self) -> str:
        """Each partition's top customers by PPP, keyed by partition number (compacted)."""
        return f"{self.prefix}{self.app_id}-leaders"

    @property
    def changelogs(self) -> list[str]:
        return [
            f"{self.prefix}{self.app_id}-{table}-changelog"
            for table in ("customers", "history", "shares", "impact", "erasures", "persons")
        ]

    @property
    def co_partitioned(self) -> list[str]:
        """Topics whose partition counts must be equal: inputs, journey's own topics, changelogs."""
        return [
            *self.inputs,
            self.erasures,
            self.rekeyed,
            self.share_joins,
            self.referred,
            self.impact_changes,
            *self.changelogs,
        ]

    @property
    def all(self) -> list[str]:
        return [
            *self.co_partitioned,
            self.ppp_updates,
            self.referral_links,
            self.impact,
            self.leaders,
            self.erasure_log,
            self.merges,
            self.dead_letters,
        ]

    @property
    def compacted(self) -> set[str]:
        return {self.ppp_updates, self.impact, self.leaders, *self.changelogs}
