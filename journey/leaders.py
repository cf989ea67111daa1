"""The platinum customers: the few with the highest PPP, kept without sorting everyone.

A worker sees every change of its customers' PPP, one at a time. It keeps a few more
candidates than it shows and a `floor`, a bound on the PPP of every customer outside the
candidates: a change below the floor costs one comparison. The candidates' top is exact
while enough of them stand above the floor; when too many fall (refunds, a bad survey),
the holder rebuilds the candidates from every customer it holds (`needs_rebuild`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["CANDIDATES", "LEADERS", "Leaders", "ranked"]

# How many a partition publishes (the page's "top 10"), and how many it keeps: the margin
# is what lets candidates fall without a rebuild.
LEADERS = 10
CANDIDATES = 48


def _rank(item: tuple[str, tuple[Decimal, Any]]) -> tuple[Decimal, str]:
    customer_id, (ppp, _) = item
    return (-ppp, customer_id)


@dataclass(slots=True)
class Leaders:
    """Candidates for the top customers of one partition by PPP, then `customer_id`.

    Invariant: every customer offered and not a candidate has PPP at most `floor` (None:
    no customer was ever left out, so the candidates are everyone offered)."""

    keep: int = CANDIDATES
    members: dict[str, tuple[Decimal, Any]] = field(default_factory=dict)
    floor: Decimal | None = None
    # The partition's customers at risk (`journey.recovery.at_risk`): counted, not ranked,
    # and published with the top (a minority of customers, so a set of ids is cheap).
    at_risk: set[str] = field(default_factory=set)

    def note_risk(self, customer_id: str, risky: bool) -> bool:
        """Whether the customer is at risk now; True when the count changed."""
        if risky:
            if customer_id in self.at_risk:
                return False
            self.at_risk.add(customer_id)
            return True
        if customer_id not in self.at_risk:
            return False
        self.at_risk.discard(customer_id)
        return True

    def offer(self, customer_id: str, ppp: Decimal, view: Any) -> bool:
        """A customer's PPP (and what to show of it) as it is now; True when a candidate
        changed. `view` is called only for candidates, so that the others cost nothing."""
        members = self.members
        if customer_id not in members and self.floor is not None and ppp <= self.floor:
            return False
        members[customer_id] = (ppp, view() if callable(view) else view)
        if len(members) > self.keep:
            lowest = max(members.items(), key=_rank)[0]
            left_out = members.pop(lowest)[0]
            self.floor = left_out if self.floor is None else max(self.floor, left_out)
        return True

    def needs_rebuild(self, count: int = LEADERS) -> bool:
        """Whether the top `count` may miss a customer left out earlier."""
        if self.floor is None:
            return False
        above = sum(1 for ppp, _ in self.members.values() if ppp > self.floor)
        return above < count

    def top(self, count: int = LEADERS) -> list[Any]:
        """The views of the top `count` candidates, highest PPP first."""
        return [view for _, (_, view) in sorted(self.members.items(), key=_rank)[:count]]


def ranked(views: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """Customer states (`CustomerState.view()`) from several partitions: the top `count`
    by PPP, then `customer_id`, as every partition ranks its own."""
    return sorted(views, key=lambda view: (-Decimal(str(view["ppp"])), view["customer_id"]))[:count]
