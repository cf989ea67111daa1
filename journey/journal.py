"""Where a customer's history is stored, and what of it is new since it was last stored.

The parts of a customer's state that grow with its history (every event_id seen, the
share_ids its events joined, the entries of its windows) are kept as append-only logs:
the newest items in a tail that the head record carries (at most `SEGMENT`), the older
ones in sealed segments, records of their own that are written once. So what a worker
writes for one event does not depend on how many came before it (`journey.stored`).

The core journals into a state's `Layout` as it folds an event in (`journey.scoring`);
`journey replay`, which stores nothing, leaves a state without one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MONEY", "SEEN", "SEGMENT", "SENTIMENTS", "SURVEYS", "Layout", "Log", "SeenItem", "WindowLog"]

# Items a segment holds. Small, because the head carries a tail of up to this many per
# log, and it is written at every change; large enough that a sealed segment's key and
# framing are a small share of it (a tail of 16 event_ids is about 350 bytes).
SEGMENT = 16

# The logs, by the letter of their records' keys (`journey.stored.segment_key`).
SEEN = "s"
SURVEYS = "u"
SENTIMENTS = "t"
MONEY = "m"

# A seen log item: (owner, id). Owner "" is an event_id of the customer's own id, an alias
# id is an event_id seen under that id of the person, and None is a share_id joined.
SeenItem = tuple[str | None, str]


class Log:
    """One append-only log: its stored segments are numbered `lo` to `hi - 1`, `tail` holds
    its newest items, and `sealed` the segments filled since the last store."""

    __slots__ = ("hi", "lo", "sealed", "tail")

    def __init__(self) -> None:
        self.lo = 0
        self.hi = 0
        self.tail: list[Any] = []
        self.sealed: dict[int, list[Any]] = {}

    def add(self, item: Any) -> None:
        tail = self.tail
        tail.append(item)
        if len(tail) >= SEGMENT:
            self.seal()

    def seal(self) -> None:
        """The tail becomes segment `hi`, written at the next store."""
        self.sealed[self.hi] = self.tail
        self.hi += 1
        self.tail = []


class WindowLog(Log):
    """The log of one window's entries, (time, value): a segment is deleted once its
    newest entry left the window, and its older entries are dropped when it is read."""

    __slots__ = ("ends",)

    def __init__(self) -> None:
        # (Not through Log's: a layout is made for every customer new to a worker.)
        self.lo = 0
        self.hi = 0
        self.tail = []
        self.sealed = {}
        # The newest entry's time of each segment from `lo` on (a list: a deque took 600
        # bytes of every cached customer's three windows, and segments leave seldom).
        self.ends: list[int] = []

    def seal(self) -> None:
        self.ends.append(max(at for at, _ in self.tail))
        super().seal()


class Layout:
    """A customer's logs: the event_ids and share_ids seen, and the entries of its three
    windows (surveys and sentiments in the CSAT window, money in the 365-day window)."""

    __slots__ = ("money", "seen", "sentiments", "surveys")

    def __init__(self) -> None:
        self.seen = Log()
        self.surveys = WindowLog()
        self.sentiments = WindowLog()
        self.money = WindowLog()

    def logs(self) -> tuple[tuple[str, Log], ...]:
        return (
            (SEEN, self.seen),
            (SURVEYS, self.surveys),
            (SENTIMENTS, self.sentiments),
            (MONEY, self.money),
        )

    def saw(self, owner: str | None, item: str) -> None:
        """An event_id seen (owner "" or an alias id) or a share_id joined (owner None)."""
        self.seen.add((owner, item))
