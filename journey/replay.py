"""`journey replay`: the final state of every customer (and the impact entries) from an event
file, no broker."""

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
from journey.customer import CustomerState, decode_state, encode_state
from journey.event_files import FileLine, read_event_file
from journey.impact import Contribution, contribution, impact_report
from journey.referrals import apply_link, join_all, sighting_for
from journey.scoring import ScoringRules, apply_event
from schemas.decode import DEFAULT_MAX_EVENT_BYTES, InvalidEvent, parse_json

__all__ = ["FileReplay", "ReplayResult", "default_jobs", "replay", "replay_file"]

# Below this many bytes a file is replayed in this process: starting workers costs more.
_PARALLEL_FROM_BYTES = 2_000_000


@dataclass(slots=True)
class ReplayResult:
    states: dict[str, CustomerState] = field(default_factory=dict)
    # What the share joins need of the events, with their line numbers (file order).
    sightings: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
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
    link: bool = True,
) -> ReplayResult:
    """Fold every valid line into its customer's state, in file order; then (unless `link`
    is False, for a caller that joins the shares of several parts) give the referred
    customers the referral links the events make."""
    result = ReplayResult()
    states = result.states
    sightings = result.sightings
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
            continue
        result.events += 1
        sighting = sighting_for(event)
        if sighting is not None:
            sightings.append((line.number, sighting))
    if link:
        link_referrals(states, join_all([sighting for _, sighting in sightings]))
    return result


def link_referrals(states: dict[str, CustomerState], links: Iterable[dict[str, Any]]) -> None:
    """Each link reaches its referred customer's state, as a worker sends it there."""
    for made in links:
        state = states.get(made["referred_id"])
        if state is not None:
            apply_link(state, made)


@dataclass(slots=True)
class FileReplay:
    """A replayed file: each customer's state as its JSON line, sorted, the invalid lines, and
    (when asked for) the impact entries with their comparisons."""

    lines: list[bytes]
    invalid: list[FileLine]
    events: int
    duplicates: int
    impact: list[dict[str, Any]] | None = None


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
    impact: bool


@dataclass(slots=True)
class _Part:
    """What one process folded: its customers' views, except those of customers that named
    a share (held encoded until the links of the whole file are known), and their sightings."""

    views: list[tuple[str, bytes]]
    contributions: list[Contribution | None]
    referred: list[tuple[str, bytes]]
    sightings: list[tuple[int, dict[str, Any]]]
    invalid: list[FileLine]
    events: int
    duplicates: int


def _replay_share(job: _Job) -> _Part:
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
        result = replay(lines, job.rules, on_invalid=invalid.append, link=False)
        # Only a customer with a ZMOT touchpoint naming a share can be referred.
        naming = {sighting["customer_id"] for _, sighting in result.sightings if sighting["kind"] == "zmot"}
        views: list[tuple[str, bytes]] = []
        contributions: list[Contribution | None] = []
        referred: list[tuple[str, bytes]] = []
        for cid, state in result.states.items():
            if cid in naming:
                referred.append((cid, encode_state(state)))
                continue
            views.append((cid, orjson.dumps(state.view())))
            if job.impact:
                contributions.append(contribution(state))
    return _Part(views, contributions, referred, result.sightings, invalid, result.events, result.duplicates)


def replay_file(
    path: Path,
    rules: ScoringRules,
    *,
    currencies: Collection[str] | None,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    jobs: int = 1,
    parallel_from_bytes: int = _PARALLEL_FROM_BYTES,
    impact: bool = False,
) -> FileReplay:
    """Replay a file, split by customer over `jobs` processes for JSON-lines files.

    The customers are independent of one another but for the referral links, which join a
    sharer and the customer it brought in: so each process folds its customers' events in
    file order, and this one joins the shares of the whole file (in file order) and gives
    the referred customers their links. The result is what one process gives. OSError if
    unreadable."""
    size = path.stat().st_size
    if (
        path.suffix.lower() == ".csv"
        or size < parallel_from_bytes
        or "fork" not in (multiprocessing.get_all_start_methods())
    ):
        jobs = 1
    work = [_Job(path, rules, currencies, max_bytes, share, jobs, impact) for share in range(jobs)]
    if jobs == 1:
        parts = [_replay_share(work[0])]
    else:
        # fork: the workers start with everything imported, in milliseconds; this process
        # folds the first share meanwhile.
        with multiprocessing.get_context("fork").Pool(jobs - 1) as pool:
            others = pool.map_async(_replay_share, work[1:])
            parts = [_replay_share(work[0]), *others.get()]
    with fewer_collections():
        views = [view for part in parts for view in part.views]
        contributions = [given for part in parts for given in part.contributions]
        sightings = sorted(
            (sighting for part in parts for sighting in part.sightings), key=lambda item: item[0]
        )
        referred = {cid: decode_state(raw) for part in parts for cid, raw in part.referred}
        link_referrals(referred, join_all([sighting for _, sighting in sightings]))
        for cid, state in referred.items():
            views.append((cid, orjson.dumps(state.view())))
            contributions.append(contribution(state))
        views.sort()
        report = impact_report(contributions) if impact else None
    invalid = sorted((line for part in parts for line in part.invalid), key=lambda line: line.number)
    return FileReplay(
        lines=[line for _, line in views],
        invalid=invalid,
        events=sum(part.events for part in parts),
        duplicates=sum(part.duplicates for part in parts),
        impact=report,
    )
