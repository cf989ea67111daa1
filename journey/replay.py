"""`journey replay`: the final state of every customer from an event file, no broker."""

from __future__ import annotations

import multiprocessing
import os
import zlib
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from journey.collector import fewer_collections
from journey.customer import CustomerState
from journey.event_files import FileLine, read_event_file
from journey.scoring import ScoringRules, apply_event
from schemas.decode import DEFAULT_MAX_EVENT_BYTES, InvalidEvent, parse_json

__all__ = ["FileReplay", "ReplayResult", "default_jobs", "replay", "replay_file"]

# Below this many bytes a file is replayed in this process: starting workers costs more.
_PARALLEL_FROM_BYTES = 2_000_000


@dataclass(slots=True)
class ReplayResult:
    states: dict[str, CustomerState] = field(default_factory=dict)
    events: int = 0
    duplicates: int = 0
    invalid: int = 0

    def sorted_states(self) -> list[CustomerState]:
        return [self.states[key] for key in sorted(self.states)]


def replay(
    lines: Iterable[FileLine],
    rules: ScoringRules,
    *,
    on_invalid: Callable[[FileLine], None] | None = None,
) -> ReplayResult:
    """Fold every valid line into its customer's state, in file order."""
    result = ReplayResult()
    states = result.states
    for line in lines:
        event = line.event
        if event is None:
            result.invalid += 1
            if on_invalid is not None:
                on_invalid(line)
            continue
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState(event.customer_id)
        if apply_event(state, event, rules).duplicate:
            result.duplicates += 1
        else:
            result.events += 1
    return result


@dataclass(slots=True)
class FileReplay:
    """A replayed file: each customer's state as its JSON line, sorted, and the invalid lines."""

    lines: list[bytes]
    invalid: list[FileLine]
    events: int
    duplicates: int


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _share_of(raw: bytes, shares: int, max_bytes: int) -> int:
    """Which worker folds this line: by customer, so each customer's events stay in file order
    in one process. Decided from the line alone, so every worker agrees without talking."""
    # Only customer_id is needed, which orjson reads exactly: `parse_json`'s checks of the
    # numbers cost every process a tenth of its time here (measured), for nothing.
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # Text orjson refuses may still be an event to the exact parser (a lone surrogate).
        try:
            data = parse_json(raw, max_bytes=max_bytes)
        except InvalidEvent:
            return 0  # the first worker reports it
    customer = data.get("customer_id") if isinstance(data, dict) else None
    if not isinstance(customer, str):
        return 0
    return zlib.crc32(customer.encode("utf-8", "surrogatepass")) % shares


@dataclass(frozen=True, slots=True)
class _Job:
    path: Path
    rules: ScoringRules
    currencies: Collection[str] | None
    max_bytes: int
    share: int
    shares: int


def _replay_share(job: _Job) -> tuple[list[tuple[str, bytes]], list[FileLine], int, int]:
    def mine(raw: bytes) -> bool:
        return _share_of(raw, job.shares, job.max_bytes) == job.share

    lines = read_event_file(
        job.path,
        currencies=job.currencies,
        max_bytes=job.max_bytes,
        select=mine if job.shares > 1 else None,
    )
    invalid: list[FileLine] = []
    with fewer_collections():
        result = replay(lines, job.rules, on_invalid=invalid.append)
        views = [(cid, orjson.dumps(state.view())) for cid, state in result.states.items()]
    return views, invalid, result.events, result.duplicates


def replay_file(
    path: Path,
    rules: ScoringRules,
    *,
    currencies: Collection[str] | None,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    jobs: int = 1,
    parallel_from_bytes: int = _PARALLEL_FROM_BYTES,
) -> FileReplay:
    """Replay a file, split by customer over `jobs` processes for JSON-lines files.

    The customers are independent of one another (only `journey-links` joins two of them,
    and replay does not produce links), so folding each customer's events in file order in
    any process gives the same states as one process does. OSError if unreadable."""
    size = path.stat().st_size
    if (
        path.suffix.lower() == ".csv"
        or size < parallel_from_bytes
        or "fork" not in (multiprocessing.get_all_start_methods())
    ):
        jobs = 1
    work = [_Job(path, rules, currencies, max_bytes, share, jobs) for share in range(jobs)]
    if jobs == 1:
        parts = [_replay_share(work[0])]
    else:
        # fork: the workers start with everything imported, in milliseconds; this process
        # folds the first share meanwhile.
        with multiprocessing.get_context("fork").Pool(jobs - 1) as pool:
            others = pool.map_async(_replay_share, work[1:])
            parts = [_replay_share(work[0]), *others.get()]
    views = sorted(view for part in parts for view in part[0])
    invalid = sorted((line for part in parts for line in part[1]), key=lambda line: line.number)
    return FileReplay(
        lines=[line for _, line in views],
        invalid=invalid,
        events=sum(part[2] for part in parts),
        duplicates=sum(part[3] for part in parts),
    )
