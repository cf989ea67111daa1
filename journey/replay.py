"""`journey replay`: the final state of every customer (and the impact entries) from an event
file, no broker."""

from __future__ import annotations

import multiprocessing
import os
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import orjson

from journey.collector import fewer_collections
from journey.customer import CustomerState
from journey.erasure import Horizons, erased, horizons
from journey.event_files import FileLine, read_event_file
from journey.identity import Persons, person_horizons
from journey.impact import Packed, add_change, contribution, impact_entries
from journey.referrals import apply_link, join_all, sighting_for
from journey.scoring import ScoringRules, apply_event
from schemas.decode import DEFAULT_MAX_EVENT_BYTES, InvalidEvent, parse_json
from schemas.events import ErasureRequest, Identify, Share, Touchpoint

__all__ = ["FileReplay", "People", "ReplayResult", "default_jobs", "people_of", "replay", "replay_file"]

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
    erased: int = 0

    def sorted_states(self) -> list[CustomerState]:
        return [self.states[key] for key in sorted(self.states)]


@dataclass(frozen=True, slots=True)
class People:
    """The persons of more than one id (SPEC.md, "Identity"): each such id's canonical id,
    and each canonical id's aliases. Ids it does not name are persons of their own."""

    canonical: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, set[str]] = field(default_factory=dict)


def people_of(identifies: Iterable[Identify], erasures: Horizons | None = None) -> People:
    """The persons the identify events that `erasures` leave make."""
    persons = Persons()
    for event in identifies:
        if not (erasures and erased(event, erasures)):
            persons.add(event)
    return People(persons.mapping(), persons.people())


def _erasure_horizons(identifies: list[Identify], requests: Sequence[ErasureRequest]) -> dict[str, int]:
    # Without identify events a request reaches its own customer only: the cheaper rule.
    return person_horizons(identifies, requests) if identifies else horizons(requests)


def replay(
    lines: Iterable[FileLine],
    rules: ScoringRules,
    *,
    on_invalid: Callable[[FileLine], None] | None = None,
    link: bool = True,
    erasures: Horizons | None = None,
    people: People | None = None,
) -> ReplayResult:
    """Fold every valid line into its person's state, in file order; then (unless `link`
    is False, for a caller that joins the shares of several parts) give the referred
    persons the referral links the events make. Events that `erasures` remove are left
    out, as if they had never been sent: they make no state, no sighting and no link.
    `people` (from `people_of`, the identify events of the whole input) says which ids are
    one person; identify events themselves fold into no state."""
    result = ReplayResult()
    states = result.states
    sightings = result.sightings
    canonical = people.canonical if people else {}
    identified: set[tuple[str, str]] = set()
    for line in lines:
        event = line.event
        if event is None:
            result.invalid += 1
            if on_invalid is not None:
                on_invalid(line)
            continue
        if erasures and erased(event, erasures):
            result.erased += 1
            continue
        if isinstance(event, Identify):
            mark = (event.customer_id, event.event_id)
            if mark in identified:
                result.duplicates += 1
            else:
                identified.add(mark)
                result.events += 1
            continue
        person = canonical.get(event.customer_id, event.customer_id) if canonical else event.customer_id
        state = states.get(person)
        if state is None:
            state = states[person] = CustomerState(person)
            if people and person in people.aliases:
                state.aliases = set(people.aliases[person])
        if apply_event(state, event, rules).duplicate:
            result.duplicates += 1
            continue
        result.events += 1
        # Only shares and touchpoints naming one take part in a join (`sighting_for` says
        # exactly which); the cheap test first keeps the other nine events in ten fast.
        if type(event) is Share or (type(event) is Touchpoint and event.referral_share_id):
            sighting = sighting_for(event)
            if sighting is not None:
                # Links are between persons (SPEC.md, "Identity").
                sighting["customer_id"] = person
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
    erased: int = 0
    # The ids with an erasure horizon (a request reaches every id of its person).
    erased_ids: int = 0


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _customer_share(customer_id: str, shares: int) -> int:
    return zlib.crc32(customer_id.encode("utf-8", "surrogatepass")) % shares


def _person_share(customer_id: str, shares: int, canonical: Mapping[str, str] | None) -> int:
    """The share of the person `customer_id` belongs to: by its canonical id."""
    return _customer_share(canonical.get(customer_id, customer_id) if canonical else customer_id, shares)


class _CustomerOnly(msgspec.Struct):
    customer_id: str


# Reads the top-level customer_id alone (the last, if written twice, as every parser here
# keeps), skipping the rest in C: 0.2 microseconds a line against orjson's 0.6 for the
# whole object, and every process reads every line of the file.
_CUSTOMER_ONLY = msgspec.json.Decoder(_CustomerOnly)


def _share_of(raw: bytes, shares: int, max_bytes: int, canonical: Mapping[str, str] | None = None) -> int:
    """Which worker folds this line: by person, so each person's events stay in file order
    in one process. Decided from the line alone (and the persons, known to every worker),
    so every worker agrees without talking."""
    try:
        return _person_share(_CUSTOMER_ONLY.decode(raw).customer_id, shares, canonical)
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass  # not an object with a string customer_id, or text msgspec refuses
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
    return _person_share(customer, shares, canonical)


@dataclass(frozen=True, slots=True)
class _Job:
    path: Path
    rules: ScoringRules
    currencies: Collection[str] | None
    max_bytes: int
    share: int
    shares: int
    impact: bool
    erasures: Horizons | None = None
    people: People | None = None


@dataclass(slots=True)
class _Folded:
    """What one process folded of its customers, before the links of the file are known."""

    result: ReplayResult
    invalid: list[FileLine]


@dataclass(slots=True)
class _Part:
    """What one process makes of its customers once it has their links: their views and
    (with --impact) the sums of their contributions per entry."""

    views: list[tuple[str, bytes]]
    totals: dict[str, Packed]


def _fold(job: _Job) -> _Folded:
    canonical = job.people.canonical if job.people else None

    def mine(raw: bytes) -> bool:
        return _share_of(raw, job.shares, job.max_bytes, canonical) == job.share

    lines = read_event_file(
        job.path,
        currencies=job.currencies,
        max_bytes=job.max_bytes,
        select=mine if job.shares > 1 else None,
    )
    invalid: list[FileLine] = []
    with fewer_collections():
        result = replay(
            lines, job.rules, on_invalid=invalid.append, link=False, erasures=job.erasures, people=job.people
        )
    return _Folded(result, invalid)


def _finish(job: _Job, folded: _Folded, links: Callable[[], list[dict[str, Any]]]) -> _Part:
    """The views (and impact sums) of a process's customers, given the links of the file.

    A link only ever reaches a customer whose ZMOT touchpoint named a share: the others are
    finished first, while `links()` still waits for the join of the whole file (in the
    process that started this one, 50-100 ms that this process used to sit idle)."""
    states = folded.result.states
    waiting = {
        sighting["customer_id"] for _, sighting in folded.result.sightings if sighting["kind"] == "zmot"
    }
    views: list[tuple[str, bytes]] = []
    totals: dict[str, Packed] = {}

    def finish(group: list[CustomerState]) -> None:
        views.extend((state.customer_id, orjson.dumps(state.view())) for state in group)
        if job.impact:
            for given in map(contribution, group):
                add_change(totals, None, given)

    with fewer_collections():
        finish([state for customer_id, state in states.items() if customer_id not in waiting])
        link_referrals(states, links())
        finish([states[customer_id] for customer_id in waiting if customer_id in states])
    return _Part(views, totals)


# What a process hands over once it has folded: its sightings (with their line numbers),
# its invalid lines, and its counts of events, duplicates and erased events.
_Handed = tuple[list[tuple[int, dict[str, Any]]], list[FileLine], int, int, int]


def _run_share(job: _Job, conn: Connection) -> None:
    """A process of its own: fold, hand over the sightings, take the links, finish."""
    try:
        folded = _fold(job)
        result = folded.result
        conn.send((result.sightings, folded.invalid, result.events, result.duplicates, result.erased))
        conn.send(_finish(job, folded, conn.recv))
    except BaseException as exc:  # handed to the parent, which raises it
        conn.send(exc)
        raise
    finally:
        conn.close()


def _received(conn: Connection) -> Any:
    message = conn.recv()
    if isinstance(message, BaseException):
        raise message
    return message


def replay_file(
    path: Path,
    rules: ScoringRules,
    *,
    currencies: Collection[str] | None,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    jobs: int = 1,
    parallel_from_bytes: int = _PARALLEL_FROM_BYTES,
    impact: bool = False,
    erasures: Horizons | None = None,
    requests: Sequence[ErasureRequest] | None = None,
) -> FileReplay:
    """Replay a file, split by customer over `jobs` processes for JSON-lines files.

    The customers are independent of one another but for the referral links, which join a
    sharer and the customer it brought in. So each process folds its customers' events in
    file order and hands this one what the share joins need (the sightings); this one joins
    the shares of the whole file in file order and hands each process the links of its
    referred customers; each then makes its customers' views (and impact sums) on its own.
    The result is what one process gives. OSError if unreadable.

    Identify events are read first, in a pass of their own, so that every process knows
    the persons from the start. Erasure `requests` reach every id of a person (SPEC.md,
    "Erasure"); `erasures` are horizons already known per id."""
    size = path.stat().st_size
    identifies = _identify_events(path, currencies, max_bytes)
    if requests is not None:
        erasures = _erasure_horizons(identifies, requests)
    people = people_of(identifies, erasures) if identifies else None
    if (
        path.suffix.lower() == ".csv"
        or size < parallel_from_bytes
        or "fork" not in (multiprocessing.get_all_start_methods())
    ):
        jobs = 1
    work = [
        _Job(path, rules, currencies, max_bytes, share, jobs, impact, erasures, people)
        for share in range(jobs)
    ]
    # The join, between the folds and the finishing, runs here alone: with the collector's
    # usual thresholds it walked this process's customers while joining, and took three
    # times as long (docs/benchmarks.md).
    with fewer_collections():
        if jobs == 1:
            folded = _fold(work[0])
            result = folded.result
            handed: list[_Handed] = [
                (result.sightings, folded.invalid, result.events, result.duplicates, result.erased)
            ]
            parts = [
                _finish(work[0], folded, lambda: join_all([sighting for _, sighting in result.sightings]))
            ]
        else:
            handed, parts = _in_processes(work)
        views = sorted(view for part in parts for view in part.views)
        totals: dict[str, Packed] = {}
        for part in parts:
            for key, sums in part.totals.items():
                totals[key] = totals.get(key, 0) + sums
        entries = impact_entries(totals) if impact else None
    invalid = [line for part in handed for line in part[1]]
    invalid.sort(key=lambda line: line.number)
    return FileReplay(
        lines=[line for _, line in views],
        invalid=invalid,
        events=sum(part[2] for part in handed),
        duplicates=sum(part[3] for part in handed),
        impact=entries,
        erased=sum(part[4] for part in handed),
        erased_ids=len(erasures or ()),
    )


def _identify_events(path: Path, currencies: Collection[str] | None, max_bytes: int) -> list[Identify]:
    """The valid identify events of a file (in a first pass: lines naming no identify are
    skipped unread)."""
    lines = read_event_file(
        path, currencies=currencies, max_bytes=max_bytes, select=lambda raw: b"identify" in raw
    )
    return [line.event for line in lines if isinstance(line.event, Identify)]


def _in_processes(work: list[_Job]) -> tuple[list[_Handed], list[_Part]]:
    """Each share of `work` folded and finished in a process of its own (fork: they start
    with everything imported, in milliseconds), the shares joined here in file order.
    This process only joins: its heap stays small, where folding a share here too left
    it a share's customers to free object by object at the end (the processes' heaps go
    with them at once)."""
    context = multiprocessing.get_context("fork")
    pipes = [context.Pipe() for _ in work]
    processes = [
        context.Process(target=_run_share, args=(job, child), daemon=True)
        for job, (_, child) in zip(work, pipes, strict=True)
    ]
    for process in processes:
        process.start()
    try:
        handed: list[_Handed] = [_received(parent) for parent, _ in pipes]
        sightings = [item for part in handed for item in part[0]]
        sightings.sort(key=lambda item: item[0])
        by_share: list[list[dict[str, Any]]] = [[] for _ in work]
        for made in join_all([sighting for _, sighting in sightings]):
            by_share[_customer_share(made["referred_id"], len(work))].append(made)
        for (parent, _), links in zip(pipes, by_share, strict=True):
            parent.send(links)
        parts: list[_Part] = [_received(parent) for parent, _ in pipes]
    except BaseException:
        for process in processes:
            process.kill()
            process.join(timeout=10)
        raise
    # Each has handed everything over and is exiting: the kernel freeing its heap took
    # 50 ms that nothing waits for now (multiprocessing reaps it later, at the latest when
    # this process exits).
    return handed, parts
