"""A customer as a worker stores it: a head record of fixed size, and its history in
segments written once (`journey.journal`).

The customers table holds the head under the customer's id: its counts, sums, scores,
keys and the tails of its logs. The history table holds each sealed segment under
`<customer_id> NUL <log letter><number>`; a customer id may hold any character, but the
part after the last NUL is always the log's, so no two customers' keys meet.

A state read from its records equals the state written (tested with any events, in any
order, with duplicates): the windows hold the entries at or after their start, as the
core's heaps do once `T` moved, and their sums are added up again.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from decimal import Decimal

import msgspec

from journey.customer import CustomerState, decode_state
from journey.decimals import ZERO, decimal_sum
from journey.journal import MONEY, SEEN, SENTIMENTS, SURVEYS, Layout, Log, SeenItem, WindowLog

__all__ = [
    "HEAD_FORMAT",
    "Written",
    "decode_head",
    "head_format",
    "load",
    "removed",
    "segment_key",
    "to_store",
]

HEAD_FORMAT = 5

# What a store writes of one customer: (key in the history table, record or None to delete).
Written = list[tuple[str, bytes | None]]


class _Head(msgspec.Struct, array_like=True):
    """The head record, format 5: CustomerState's fields of fixed size, and each log's
    segment numbers and tail."""

    format: int
    customer_id: str
    first_us: int
    last_us: int
    surveys: int
    purchases: int
    refunds: int
    moments: list[int]
    latest_survey: tuple[int, str, Decimal] | None
    lifetime_net: Decimal
    version: int
    csat: Decimal
    cltv: Decimal
    cltv_365d: Decimal
    ppp: Decimal
    previous_ppp: Decimal | None
    cause_event_id: str
    cause_type: str
    campaigns: set[str]
    channels: set[str]
    referrals: dict[str, tuple[str, str]]
    smot_failures: int
    last_failure_us: int | None
    last_good_us: int | None
    aliases: set[str]
    referral_seqs: dict[str, int]
    seen_hi: int
    seen_tail: list[SeenItem]
    # (lo, hi, tail) of the surveys', sentiments' and money's logs.
    windows: tuple[
        tuple[int, int, list[tuple[int, Decimal]]],
        tuple[int, int, list[tuple[int, Decimal]]],
        tuple[int, int, list[tuple[int, Decimal]]],
    ]


_ENCODER = msgspec.msgpack.Encoder()
_HEAD = msgspec.msgpack.Decoder(_Head)
# A sealed segment of the seen log: the customer's own event_ids, then the other items.
_SEEN = msgspec.msgpack.Decoder(tuple[list[str], list[SeenItem]])
_ENTRIES = msgspec.msgpack.Decoder(list[tuple[int, Decimal]])
_ARRAY_16 = 0xDC


def head_format(raw: bytes) -> int | None:
    """The format of a customers-table record if it is a head (5 and later), else None:
    a head is a MessagePack array 16 (0xDC and two bytes of length) led by its format
    number, where format 4 has 4 and the JSON formats a bracket or a brace."""
    if len(raw) > 3 and raw[0] == _ARRAY_16 and HEAD_FORMAT <= raw[3] < 0x80:
        return raw[3]
    return None


def segment_key(customer_id: str, log: str, number: int) -> str:
    return f"{customer_id}\x00{log}{number}"


def _head_of(state: CustomerState, layout: Layout) -> bytes:
    surveys, sentiments, money = layout.surveys, layout.sentiments, layout.money
    return _ENCODER.encode(
        _Head(
            HEAD_FORMAT,
            state.customer_id,
            state.first_us,
            state.last_us,
            state.surveys,
            state.purchases,
            state.refunds,
            state.moments,
            state.latest_survey,
            state.lifetime_net,
            state.version,
            state.csat,
            state.cltv,
            state.cltv_365d,
            state.ppp,
            state.previous_ppp,
            state.cause_event_id,
            state.cause_type,
            state.campaigns,
            state.channels,
            state.referrals,
            state.smot_failures,
            state.last_failure_us,
            state.last_good_us,
            state.aliases,
            state.referral_seqs,
            layout.seen.hi,
            layout.seen.tail,
            (
                (surveys.lo, surveys.hi, surveys.tail),
                (sentiments.lo, sentiments.hi, sentiments.tail),
                (money.lo, money.hi, money.tail),
            ),
        )
    )


def _decode(raw: bytes) -> _Head:
    try:
        head = _HEAD.decode(raw)
    except msgspec.ValidationError as exc:
        # Written by a newer release (a rollback) with other fields: refused, not misread.
        raise ValueError(
            f"customer record this release cannot read ({exc}); it reads formats 1 to {HEAD_FORMAT}"
        ) from None
    if head.format != HEAD_FORMAT:
        raise ValueError(
            f"customer encoded in format {head.format!r}; this release reads formats 1 to {HEAD_FORMAT}"
        )
    return head


def _state_of(head: _Head) -> CustomerState:
    """The state without its history: what the page, the API and the leaders read."""
    # Positional, in CustomerState's order: a worker reads a head for every customer not
    # in its cache, and keywords took a third of that.
    return CustomerState(
        head.customer_id,
        set(),
        head.first_us,
        head.last_us,
        head.surveys,
        head.purchases,
        head.refunds,
        head.moments,
        [],
        ZERO,
        head.latest_survey,
        [],
        ZERO,
        head.lifetime_net,
        [],
        ZERO,
        head.version,
        head.csat,
        head.cltv,
        head.cltv_365d,
        head.ppp,
        head.previous_ppp,
        head.cause_event_id,
        head.cause_type,
        head.campaigns,
        head.channels,
        head.referrals,
        set(),
        None,
        head.smot_failures,
        head.last_failure_us,
        head.last_good_us,
        head.aliases,
        {},
        head.referral_seqs,
    )


def decode_head(raw: bytes) -> CustomerState:
    """A customers-table record as the page, the API and the leaders read it: scores,
    counts and keys, without the history (none is needed to show a customer)."""
    if head_format(raw) is None:
        return decode_state(raw)  # an older format: the whole state
    return _state_of(_decode(raw))


def load(
    raw: bytes, segment: Callable[[str], bytes | None], csat_window_us: int, cltv_window_us: int
) -> CustomerState:
    """A customer as stored, history included: `raw` its head (or a record of an older
    format, read whole and written again as a head at its next store), `segment` the
    history table's get. A segment that is missing reads as empty."""
    if head_format(raw) is None:
        return decode_state(raw)  # no layout: `to_store` writes it whole
    head = _decode(raw)
    state = _state_of(head)
    layout = state.layout = Layout()
    customer_id = head.customer_id
    layout.seen.hi = head.seen_hi
    layout.seen.tail = head.seen_tail
    for number in range(head.seen_hi):
        stored = segment(segment_key(customer_id, SEEN, number))
        if stored is not None:
            own, others = _SEEN.decode(stored)
            state.seen.update(own)
            _take_seen(state, others)
    _take_seen(state, head.seen_tail)
    csat_start = head.last_us - csat_window_us
    surveys, sentiments, money = head.windows
    state.window_surveys, state.window_survey_sum = _window(
        layout.surveys, SURVEYS, surveys, csat_start, customer_id, segment
    )
    state.sentiments, state.sentiment_sum = _window(
        layout.sentiments, SENTIMENTS, sentiments, csat_start, customer_id, segment
    )
    state.recent_money, state.recent_sum = _window(
        layout.money, MONEY, money, head.last_us - cltv_window_us, customer_id, segment
    )
    return state


def _window(
    log: WindowLog,
    name: str,
    stored: tuple[int, int, list[tuple[int, Decimal]]],
    start: int,
    customer_id: str,
    segment: Callable[[str], bytes | None],
) -> tuple[list[tuple[int, Decimal]], Decimal]:
    """A window's heap and sum from its log: the entries at or after `start`."""
    lo, hi, tail = stored
    log.lo, log.hi, log.tail = lo, hi, tail
    window: list[tuple[int, Decimal]] = []
    for number in range(lo, hi):
        raw = segment(segment_key(customer_id, name, number))
        entries = [] if raw is None else _ENTRIES.decode(raw)
        log.ends.append(max((at for at, _ in entries), default=start - 1))
        window += entries
    window += tail
    if not window:
        return window, ZERO
    if min(window)[0] < start:  # some left the window since they were stored
        window = [entry for entry in window if entry[0] >= start]
    heapq.heapify(window)
    return window, decimal_sum(window)


def _take_seen(state: CustomerState, items: Iterable[SeenItem]) -> None:
    seen, joined = state.seen, state.joined
    for owner, item in items:
        if owner == "":
            seen.add(item)
        elif owner is None:
            joined.add(item)
        else:
            state.seen_of(owner).add(item)


def to_store(
    state: CustomerState, prior: Layout | None, csat_window_us: int, cltv_window_us: int
) -> tuple[bytes, Written]:
    """The head record of `state`, and what to write to and delete from the history table:
    what is new since `prior` (the layout as read), or, for a state without it (built
    anew, or read in an older format), the whole history, with whatever `prior` stored
    and is not written again deleted."""
    written: Written = []
    layout = state.layout
    if layout is None or layout is not prior:
        layout = state.layout = _layout_of(state)
        if prior is not None:
            fresh = {
                segment_key(state.customer_id, name, number)
                for name, log in layout.logs()
                for number in log.sealed
            }
            written += [(key, None) for key in _keys(state.customer_id, prior) if key not in fresh]
    customer_id = state.customer_id
    csat_start = state.last_us - csat_window_us
    for name, log, start in (
        (SURVEYS, layout.surveys, csat_start),
        (SENTIMENTS, layout.sentiments, csat_start),
        (MONEY, layout.money, state.last_us - cltv_window_us),
    ):
        ends = log.ends
        while ends and ends[0] < start:  # every entry of segment `lo` left the window
            del ends[0]
            log.sealed.pop(log.lo, None)  # (deleted all the same: a key of that number may be stored)
            written.append((segment_key(customer_id, name, log.lo), None))
            log.lo += 1
    for name, sealed_log in layout.logs():
        if sealed_log.sealed:
            for number, items in sealed_log.sealed.items():
                if name == SEEN:  # (see _SEEN)
                    items = [[item for owner, item in items if owner == ""], [i for i in items if i[0] != ""]]
                written.append((segment_key(customer_id, name, number), _ENCODER.encode(items)))
            sealed_log.sealed = {}
    return _head_of(state, layout), written


def removed(customer_id: str, prior: Layout | None) -> Written:
    """What to delete of a customer that is gone (an erasure): every segment stored."""
    return [] if prior is None else [(key, None) for key in _keys(customer_id, prior)]


def _keys(customer_id: str, layout: Layout) -> list[str]:
    return [
        segment_key(customer_id, name, number)
        for name, log in layout.logs()
        for number in range(log.lo, log.hi)
    ]


def _layout_of(state: CustomerState) -> Layout:
    """The logs of a whole state, every full segment sealed (to be written)."""
    layout = Layout()
    seen: list[SeenItem] = [("", item) for item in state.seen]
    for owner, items in state.alias_seen.items():
        seen += [(owner, item) for item in items]
    seen += [(None, item) for item in state.joined]
    _fill(layout.seen, seen)
    for log, window in (
        (layout.surveys, state.window_surveys),
        (layout.sentiments, state.sentiments),
        (layout.money, state.recent_money),
    ):
        _fill(log, sorted(window))
    return layout


def _fill(log: Log, items: Iterable[object]) -> None:
    for item in items:
        log.add(item)
