"""The live top-N of customers by PPP that `journey tail ppp-updates --table` shows."""

from __future__ import annotations

from typing import Any

__all__ = ["Scoreboard"]


class Scoreboard:
    """The latest update per customer (by version), ranked by PPP."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, Any]] = {}
        self.updates = 0

    def add(self, update: dict[str, Any]) -> None:
        self.updates += 1
        known = self.latest.get(update["customer_id"])
        if known is None or update["version"] > known["version"]:
            self.latest[update["customer_id"]] = update

    def erase(self, customer_id: str) -> None:
        """A tombstone on `ppp-updates`: the customer was erased."""
        self.updates += 1
        self.latest.pop(customer_id, None)

    def render(self, top: int) -> str:
        ranked = sorted(self.latest.values(), key=lambda u: (-u["ppp"], u["customer_id"]))[:top]
        lines = [
            f"top {min(top, len(ranked))} of {len(self.latest)} customers by PPP ({self.updates} updates read)",
            f"{'#':>3}  {'customer':<24} {'ppp':>12} {'csat':>6} {'cltv':>12} {'ver':>5}  as of",
        ]
        for rank, u in enumerate(ranked, start=1):
            lines.append(
                f"{rank:>3}  {u['customer_id'][:24]:<24} {u['ppp']:>12,.2f} {u['csat']:>6.2f} "
                f"{u['cltv']:>12,.2f} {u['version']:>5}  {u['as_of']}"
            )
        return "\n".join(lines)
