"""How often Python's cyclic garbage collector runs on the paths that handle many events.

Folding an event allocates tens of container objects (a parsed event, states decoded and
let go, updates) that reference counting frees; nothing on these paths makes cycles of
its own. With the default threshold the collector ran every 700 allocations and kept
walking the long-lived heap (the held customers, Faust, the Kafka client): 10% of a
worker's CPU at 100,000 events (docs/benchmarks.md). Cycles are still collected, only
in larger steps.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["THRESHOLDS", "fewer_collections", "tune_for_throughput"]

# Young objects before a collection, then how many of each generation before the next.
THRESHOLDS = (50_000, 20, 100)


def tune_for_throughput() -> None:
    """For a long-running process, once start-up is done: never look again at what
    start-up built (modules, the app), and collect in larger steps."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect in larger steps for the duration of a bulk job, then as before."""
    previous = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
