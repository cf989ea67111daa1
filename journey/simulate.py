"""Synthetic customer journeys that follow the circle: ZMOT, FMOT, purchase, SMOT, survey, UMOT.

Seeded and deterministic: the same seed gives the same events. A share's readers start
journeys of their own through it (referral chains, over several share channels), use is
repeated with failures and recoveries that move sentiment, surveys come on all three scales,
and some orders are refunded. Most customers arrive through a campaign, and campaigns differ
the way impact is there to show: one converts well but leaves its customers less satisfied.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["JourneySimulator"]

_CHANNELS = {
    "zmot": ("search", "reviews", "social", "friend"),
    "fmot": ("store", "product_page", "app"),
    "smot": ("app", "support", "store", "delivery"),
}
_SHARE_CHANNELS = ("social", "review", "word_of_mouth", "email")
_SCALES = ("1-10", "0-10", "1-5")


# One simulated customer in this many researches anonymously until its first purchase.
_ANONYMOUS_EVERY = 20


@dataclass(frozen=True, slots=True)
class _Campaign:
    """How a campaign's customers behave: added to the chance of buying after the first
    impression, and to the mood of their use and their survey answers."""

    conversion: float
    mood: float


# Names with `/`, `%`, spaces and non-ASCII on purpose: they must survive URLs and topic keys.
_CAMPAIGNS = {
    "spring-sale": _Campaign(conversion=0.05, mood=0.0),
    # Over-marketing: pushes people to buy, and they like it less (impact's harms_experience).
    "retarget/push": _Campaign(conversion=0.25, mood=-0.6),
    "été 2026": _Campaign(conversion=0.0, mood=0.2),
    "50% off": _Campaign(conversion=0.15, mood=-0.1),
}
_NO_CAMPAIGN = _Campaign(conversion=0.0, mood=0.0)
_PRICES = (9.99, 19.5, 49, 120, 349.9, 999)


@dataclass(order=True)
class _Step:
    at: datetime
    seq: int
    customer: int = field(compare=False)
    stage: str = field(compare=False)
    via_share: str | None = field(default=None, compare=False)


class JourneySimulator:
    """An endless (or bounded) stream of valid events as JSON-ready dicts with `type`."""

    def __init__(
        self,
        *,
        seed: int = 7,
        customers: int = 100,
        currencies: Sequence[str] = ("USD",),
        start: datetime | None = None,
        duplicate_rate: float = 0.01,
        prefix: str = "c",
        anonymous_every: int = _ANONYMOUS_EVERY,
    ) -> None:
        self.random = random.Random(seed)
        self.max_customers = customers
        self.currencies = tuple(currencies) or ("USD",)
        self.clock = start or datetime(2026, 1, 1, tzinfo=UTC)
        self.duplicate_rate = duplicate_rate
        self.prefix = prefix
        self._queue: list[_Step] = []
        self._seq = 0
        self._next_customer = 0
        self._events = 0
        self._shares: list[str] = []
        self._orders: dict[int, list[tuple[str, str, str]]] = {}
        self._campaigns: dict[int, str] = {}
        # Customers still anonymous: their research and first impressions come under a
        # device id until their first purchase identifies them (SPEC.md, "Identity").
        self._anonymous: set[int] = set()
        self._anonymous_every = anonymous_every  # 0: every customer is known from the start

    @property
    def customers_started(self) -> int:
        return self._next_customer

    def _schedule(self, customer: int, stage: str, after_hours: float, via: str | None = None) -> None:
        self._seq += 1
        heapq.heappush(
            self._queue, _Step(self.clock + timedelta(hours=after_hours), self._seq, customer, stage, via)
        )

    def _new_customer(self, via_share: str | None = None) -> None:
        if self._next_customer >= self.max_customers:
            return
        customer = self._next_customer
        self._next_customer += 1
        every = self._anonymous_every
        if every and customer % every == every // 2:
            self._anonymous.add(customer)
        if via_share is None and self.random.random() < 0.7:
            self._campaigns[customer] = self.random.choice(sorted(_CAMPAIGNS))
        self._schedule(customer, "zmot", self.random.uniform(0, 6), via_share)

    def _event(self, event_type: str, customer: int, at: datetime, **fields: Any) -> dict[str, Any]:
        self._events += 1
        return {
            "type": event_type,
            "event_id": f"{self.prefix}-ev-{self._events}",
            "customer_id": self._id_of(customer, event_type),
            "occurred_at": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            **fields,
        }

    def _id_of(self, customer: int, event_type: str) -> str:
        if customer in self._anonymous and event_type != "identify":
            return f"{self.prefix}-anon-{customer:06d}"
        return f"{self.prefix}-{customer:06d}"

    def _sentiment(self, mood: float) -> float:
        return round(max(-1.0, min(1.0, self.random.gauss(mood, 0.3))), 3)

    def _campaign_of(self, customer: int) -> tuple[dict[str, str], _Campaign]:
        name = self._campaigns.get(customer)
        return ({"campaign": name} if name else {}), _CAMPAIGNS.get(name or "", _NO_CAMPAIGN)

    def _step(self, step: _Step) -> list[dict[str, Any]]:
        r = self.random
        c, at = step.customer, step.at
        tagged, campaign = self._campaign_of(c)
        if step.stage == "zmot":
            fields: dict[str, Any] = {"moment": "zmot", "channel": r.choice(_CHANNELS["zmot"]), **tagged}
            if step.via_share:
                fields["referral_share_id"] = step.via_share
                fields["channel"] = "friend"
            if r.random() < 0.5:
                fields["sentiment"] = self._sentiment(0.3)
            self._schedule(c, "fmot" if r.random() < 0.8 else "zmot", r.uniform(1, 72))
            return [self._event("touchpoint", c, at, **fields)]
        if step.stage == "fmot":
            buys = r.random() < 0.7 + campaign.conversion
            self._schedule(c, "purchase" if buys else "smot", r.uniform(1, 48))
            return [
                self._event(
                    "touchpoint",
                    c,
                    at,
                    moment="fmot",
                    channel=r.choice(_CHANNELS["fmot"]),
                    sentiment=self._sentiment(0.2 + campaign.mood),
                    **tagged,
                )
            ]
        if step.stage == "purchase":
            order = f"{self.prefix}-o-{self._events + 1}"
            currency = r.choice(self.currencies)
            amount = f"{r.choice(_PRICES) * r.uniform(0.5, 3):.2f}"
            self._orders.setdefault(c, []).append((order, amount, currency))
            self._schedule(c, "smot", r.uniform(2, 240))
            identified = []
            if c in self._anonymous:
                # The first purchase says who the visitor was.
                identified = [self._event("identify", c, at, anonymous_id=self._id_of(c, "touchpoint"))]
                self._anonymous.discard(c)
            return [
                *identified,
                self._event("purchase", c, at, order_id=order, amount=amount, currency=currency),
            ]
        if step.stage == "smot":
            # The second moment: one customer in ten is served badly again and again (the
            # customers the model warns about); a failure has a sentiment below 0 and its
            # recovery one above (SPEC.md, "The second moment").
            fragile = c % 10 == 0
            failed = r.random() < (0.6 if fragile else 0.15)
            sentiment = self._sentiment((-0.6 if failed else 0.4) + campaign.mood)
            events = [
                self._event(
                    "touchpoint",
                    c,
                    at,
                    moment="smot",
                    channel=r.choice(_CHANNELS["smot"]),
                    action="failure" if failed else "use",
                    sentiment=min(sentiment, -0.05) if failed else sentiment,
                )
            ]
            if failed and r.random() < (0.3 if fragile else 0.7):
                events.append(
                    self._event(
                        "touchpoint",
                        c,
                        at + timedelta(minutes=30),
                        moment="smot",
                        channel="support",
                        action="recovery",
                        sentiment=max(self._sentiment(0.5), 0.05),
                    )
                )
            roll = r.random()
            if roll < 0.35:
                self._schedule(c, "survey", r.uniform(1, 96))
            elif roll < 0.55:
                self._schedule(c, "purchase", r.uniform(24, 24 * 60))
            elif roll < 0.75:
                self._schedule(c, "share", r.uniform(1, 96))
            elif roll < 0.82 and self._orders.get(c):
                self._schedule(c, "refund", r.uniform(1, 24 * 20))
            elif roll < 0.95:
                self._schedule(c, "smot", r.uniform(12, 24 * 14))
            return events
        if step.stage == "survey":
            scale = r.choice(_SCALES)
            low, high = {"1-10": (1, 10), "0-10": (0, 10), "1-5": (1, 5)}[scale]
            self._schedule(c, "share" if r.random() < 0.4 else "smot", r.uniform(12, 24 * 30))
            # The campaign's mood moves the answer by up to a third of the scale.
            shift = round(campaign.mood * (high - low) / 2)
            score = min(high, max(low, r.randint(low, high) + shift))
            return [self._event("survey", c, at, score=score, scale=scale, survey_id="nps-q1")]
        if step.stage == "refund":
            order, amount, currency = r.choice(self._orders[c])
            return [
                self._event(
                    "purchase", c, at, order_id=order, amount=amount, currency=currency, kind="refund"
                )
            ]
        # share: UMOT, whose readers may start their own journeys (the next person's ZMOT)
        share_id = f"{self.prefix}-share-{self._events + 1}"
        self._shares.append(share_id)
        for _ in range(r.choice((0, 1, 1, 2, 3))):
            self._seq += 1
            heapq.heappush(
                self._queue,
                _Step(at + timedelta(hours=r.uniform(1, 72)), self._seq, -1, "referred", share_id),
            )
        if r.random() < 0.3:
            self._schedule(c, "smot", r.uniform(24, 24 * 30))
        return [
            self._event(
                "share",
                c,
                at,
                share_id=share_id,
                channel=r.choice(_SHARE_CHANNELS),
                sentiment=self._sentiment(0.6),
            )
        ]

    def events(self, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Events in event-time order, with the occasional at-least-once duplicate."""
        sent = 0
        last: dict[str, Any] | None = None
        while limit is None or sent < limit:
            if not self._queue or (self._next_customer < self.max_customers and self.random.random() < 0.15):
                if self._next_customer >= self.max_customers and not self._queue:
                    return
                self._new_customer()
                if not self._queue:
                    return
            step = heapq.heappop(self._queue)
            self.clock = max(self.clock, step.at)
            if step.stage == "referred":
                self._new_customer(via_share=step.via_share)
                continue
            for event in self._step(step):
                if limit is not None and sent >= limit:
                    return
                yield event
                sent += 1
                last = event
            if (
                last is not None
                and self.random.random() < self.duplicate_rate
                and (limit is None or sent < limit)
            ):
                yield dict(last)
                sent += 1
