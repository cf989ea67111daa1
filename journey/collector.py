"""How often Python's cyclic garbage collector runs on the paths that handle many events.

Folding an event allocates tens of container objects (a parsed event, states decoded and
let go, updates) that reference counting frees; nothing on these paths makes cycles of
its own. With the default threshold the collector ran every 700 allocations and kept
walking the long-lived heap (the held customers, Faust, the Kafka client): 10% of a
worker's CPU at 100,000 events (docs/benchmarks.md).

A collection is due when the containers allocated outnumber those freed by the first
threshold, but it walks every container allocated since the last one that is still alive.
A worker's decoded customers (about fifteen containers each) come and go as its cache turns
over, so the two counts cancel while the walk grows: with a first threshold of 50,000 a
worker at 6,000 events/s paused 16-199 ms every few seconds, a large part of its p99
latency (docs/benchmarks.md). With a million, it collects after a million containers it
keeps (new customers, share joins): not once in the 20 s of the latency stage, and the
same survivors are walked fewer times. Cycles are still collected: a
worker at that rate made 466 objects in cycles in 29 s (from what, not measured), and a
dead letter makes none.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["THRESHOLDS", "fewer_collections", "tune_for_throughput"]

# Containers allocated less those freed before a collection, then how many collections of
# each generation before one of the next.
THRESHOLDS = (1_000_000, 10, 10)


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
