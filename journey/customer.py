"""One customer's state: exactly what the SPEC formulas need, and its compact encoding.

Everything older than a window is folded away as the latest event time `T` moves forward
(`T` never moves back), so a customer's state is bounded by the events inside the windows
plus the set of seen `event_id`s, which exact deduplication cannot do without.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import orjson

from journey.decimals import decimal_sum
from journey.journal import Layout

__all__ = [
    "MOMENTS",
    "RECOVERY_KEYS",
    "CustomerState",
    "decode_state",
    "encode_state",
    "format_us",
    "to_us",
]

MOMENTS = ("zmot", "fmot", "smot", "umot")
# The values of `recovery` a customer with SMOT touchpoints has (SPEC.md, "The second moment").
RECOVERY_KEYS = ("smooth", "recovered", "unrecovered")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001  # only formats UTC microseconds
_ONE_US = timedelta(microseconds=1)
_ZERO = Decimal(0)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch: exact, cheap to compare, compact to store."""
    return (moment - _EPOCH) // _ONE_US


_ISOFORMAT = datetime.isoformat


def format_us(micros: int) -> str:
    """RFC 3339 in UTC with `Z`, as every timestamp out is written."""
    # Naive arithmetic and a literal Z: a third cheaper than formatting an aware datetime;
    # and positional arguments, a quarter cheaper than keywords (every update has one).
    return _ISOFORMAT(_NAIVE_EPOCH + timedelta(0, 0, micros), "T", "microseconds") + "Z"


@dataclass(slots=True, eq=True)
class CustomerState:
    """The folded history of one customer.

    The three lists are min-heaps on the timestamp, so that folding away what left a
    window costs a pop, not a scan. Each has its running sum beside it.
    """

    customer_id: str
    seen: set[str] = field(default_factory=set)
    first_us: int = 0
    last_us: int = 0
    surveys: int = 0
    purchases: int = 0
    refunds: int = 0
    moments: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    # Normalised survey scores inside the CSAT window, and their sum.
    window_surveys: list[tuple[int, Decimal]] = field(default_factory=list)
    window_survey_sum: Decimal = _ZERO
    # The most recent survey ever: (occurred_at, event_id, normalised score).
    latest_survey: tuple[int, str, Decimal] | None = None
    # Sentiments of touchpoints and shares inside the CSAT window, and their sum.
    sentiments: list[tuple[int, Decimal]] = field(default_factory=list)
    sentiment_sum: Decimal = _ZERO
    # Purchases minus refunds in the base currency over the whole lifetime, unrounded.
    lifetime_net: Decimal = _ZERO
    # Signed base-currency amounts inside the 365-day window, and their sum.
    recent_money: list[tuple[int, Decimal]] = field(default_factory=list)
    recent_sum: Decimal = _ZERO
    # What was last published, to tell whether an event changed a score.
    version: int = 0
    csat: Decimal = _ZERO
    cltv: Decimal = _ZERO
    cltv_365d: Decimal = _ZERO
    ppp: Decimal = _ZERO
    previous_ppp: Decimal | None = None
    # The event behind the latest update, so that a redelivered one can re-send it.
    cause_event_id: str = ""
    cause_type: str = ""
    # The keys of the impact dimensions (SPEC.md, "Impact"): campaigns and channels of the
    # customer's own touchpoints, and the referral links that name it as the referred one,
    # share_id -> (referrer_id, share_channel), so that a link delivered again changes nothing.
    campaigns: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)
    referrals: dict[str, tuple[str, str]] = field(default_factory=dict)
    # The share_ids the customer's events took part in (its shares, and the shares its ZMOT
    # touchpoints name): the joins an erasure of the customer must reach.
    joined: set[str] = field(default_factory=set)
    # The impact entries of those keys (`journey.impact.contribution`), kept while the keys
    # stay as they are (whoever adds a key sets this to None): keys rarely change, and
    # building the entries' names was a third of a contribution's cost. Not stored.
    entry_keys: tuple[tuple[str, ...], ...] | None = field(default=None, compare=False, repr=False)
    # The second moment: the number of failed SMOT touchpoints, and the latest failure's and
    # the latest good SMOT's times (None before one): all `recovery` needs, in any order.
    smot_failures: int = 0
    last_failure_us: int | None = None
    last_good_us: int | None = None
    # Identity (SPEC.md, "Identity"): the person's other ids, and the event_ids seen under
    # each of them (an event is told apart by its own customer_id and event_id).
    aliases: set[str] = field(default_factory=set)
    alias_seen: dict[str, set[str]] = field(default_factory=dict)
    # The number of the latest message from each share's join taken into `referrals` (a
    # link, or that there is none), kept also for a share that left: the messages of one
    # join reach a person by several ids, in any order, and the newest must win.
    referral_seqs: dict[str, int] = field(default_factory=dict)
    # Where the worker stores the history (`journey.journal`): what of it is in which
    # record, and what is new since. None in `journey replay`, and for a state that must be
    # written whole (built by a merge or an erasure, or read in an older format). Not stored.
    layout: Layout | None = field(default=None, compare=False, repr=False)

    def holds_anything(self) -> bool:
        """Whether there is anything to keep of the customer: events folded, or referral
        links (and the numbers of the joins' messages) waiting for its events."""
        return self.version > 0 or bool(self.referrals) or bool(self.referral_seqs)

    def seen_of(self, customer_id: str) -> set[str]:
        """The event_ids seen under one of the person's ids (created empty for a new one)."""
        if customer_id == self.customer_id:
            return self.seen
        seen = self.alias_seen.get(customer_id)
        if seen is None:
            seen = self.alias_seen[customer_id] = set()
        return seen

    def recovery(self) -> str | None:
        """`smooth`, `recovered` or `unrecovered` (SPEC.md, "The second moment"); None
        without a SMOT touchpoint."""
        if not self.moments[2]:
            return None
        if not self.smot_failures:
            return "smooth"
        good, failure = self.last_good_us, self.last_failure_us
        if good is not None and failure is not None and good > failure:
            return "recovered"
        return "unrecovered"

    def referred_by(self) -> list[str]:
        if not self.referrals:
            return []
        return sorted({referrer for referrer, _ in self.referrals.values()})

    def referral_channels(self) -> list[str]:
        if not self.referrals:
            return []
        return sorted({channel for _, channel in self.referrals.values()})

    def moments_dict(self) -> dict[str, int]:
        # Spelled out (in MOMENTS order): built for every update, and zip cost 3% of a worker.
        zmot, fmot, smot, umot = self.moments
        return {"zmot": zmot, "fmot": fmot, "smot": smot, "umot": umot}

    def view(self) -> dict[str, Any]:
        """The customer state of SPEC.md ("Customer state"), JSON-ready."""
        last_seen = format_us(self.last_us)
        return {
            "customer_id": self.customer_id,
            "csat": float(self.csat),
            "cltv": float(self.cltv),
            "ppp": float(self.ppp),
            "cltv_365d": float(self.cltv_365d),
            "version": self.version,
            "moments": self.moments_dict(),
            "as_of": last_seen,
            "surveys": self.surveys,
            "purchases": self.purchases,
            "refunds": self.refunds,
            "first_seen": format_us(self.first_us),
            "last_seen": last_seen,
            "campaigns": sorted(self.campaigns),
            "channels": sorted(self.channels),
            "referred_by": self.referred_by(),
            "referral_channels": self.referral_channels(),
            "smot_failures": self.smot_failures,
            "recovery": self.recovery(),
            "aliases": sorted(self.aliases),
        }


# The changelog record, format 4: a MessagePack array of the fields below, written and read
# by msgspec in C (decimals as their exact text). The older formats, JSON (an object, "v1";
# flat arrays led by their number, 2 and 3), are still read, so a worker upgraded in place
# recovers its table (from formats 1 and 2 its customers' keys start empty).
_FORMAT = 4
_JSON_FORMAT = 3


class _Record(msgspec.Struct, array_like=True):
    """A customer as its changelog record holds it: CustomerState's fields, in order."""

    format: int
    customer_id: str
    seen: set[str]
    first_us: int
    last_us: int
    surveys: int
    purchases: int
    refunds: int
    moments: list[int]
    window_surveys: list[tuple[int, Decimal]]
    window_survey_sum: Decimal
    latest_survey: tuple[int, str, Decimal] | None
    sentiments: list[tuple[int, Decimal]]
    sentiment_sum: Decimal
    lifetime_net: Decimal
    recent_money: list[tuple[int, Decimal]]
    recent_sum: Decimal
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
    # Added within format 4: a record written without it reads as no joins.
    joined: set[str] = msgspec.field(default_factory=set)
    # Added within format 4 for the second moment: a record written without them reads as
    # no SMOT failure, so its SMOT touchpoints until then count as smooth (docs/choices.md).
    smot_failures: int = 0
    last_failure_us: int | None = None
    last_good_us: int | None = None
    # Added within format 4 for identity: a record written without them is a person of one id.
    aliases: set[str] = msgspec.field(default_factory=set)
    alias_seen: dict[str, set[str]] = msgspec.field(default_factory=dict)
    # Added within format 4: a record written without it took no numbered join message yet.
    referral_seqs: dict[str, int] = msgspec.field(default_factory=dict)


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Record)
# The first byte of a MessagePack array (fixarray, array 16, array 32); JSON starts with [ or {.
_MSGPACK_ARRAY = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}


def encode_state(state: CustomerState) -> bytes:
    """The table's changelog record of a customer; heaps are stored in heap order.

    A customer not kept decoded is decoded on the path of every event of it and encoded
    once per batch it is in: MessagePack through msgspec does both in a fraction of the
    time JSON arrays built by hand took, and is smaller (docs/benchmarks.md)."""
    return _ENCODER.encode(
        _Record(
            _FORMAT,
            state.customer_id,
            state.seen,
            state.first_us,
            state.last_us,
            state.surveys,
            state.purchases,
            state.refunds,
            state.moments,
            state.window_surveys,
            state.window_survey_sum,
            state.latest_survey,
            state.sentiments,
            state.sentiment_sum,
            state.lifetime_net,
            state.recent_money,
            state.recent_sum,
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
            state.joined,
            state.smot_failures,
            state.last_failure_us,
            state.last_good_us,
            state.aliases,
            state.alias_seen,
            state.referral_seqs,
        )
    )


def _decode_record(raw: bytes) -> CustomerState:
    try:
        record = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        # Written by a newer release (a rollback) with other fields: refused, not misread.
        raise ValueError(
            f"customer record this release cannot read ({exc}); it reads formats 1 to {_FORMAT}"
        ) from None
    if record.format != _FORMAT:
        raise ValueError(
            f"customer encoded in format {record.format!r}; this release reads formats 1 to {_FORMAT}"
        )
    return CustomerState(
        record.customer_id,
        record.seen,
        record.first_us,
        record.last_us,
        record.surveys,
        record.purchases,
        record.refunds,
        record.moments,
        record.window_surveys,
        record.window_survey_sum,
        record.latest_survey,
        record.sentiments,
        record.sentiment_sum,
        record.lifetime_net,
        record.recent_money,
        record.recent_sum,
        record.version,
        record.csat,
        record.cltv,
        record.cltv_365d,
        record.ppp,
        record.previous_ppp,
        record.cause_event_id,
        record.cause_type,
        record.campaigns,
        record.channels,
        record.referrals,
        record.joined,
        None,
        record.smot_failures,
        record.last_failure_us,
        record.last_good_us,
        record.aliases,
        record.alias_seen,
        record.referral_seqs,
    )


def _join(stamps: list[int], values: list[str]) -> list[tuple[int, Decimal]]:
    return list(zip(stamps, map(Decimal, values), strict=True))


def decode_state(raw: bytes) -> CustomerState:
    if raw[0] in _MSGPACK_ARRAY:
        return _decode_record(raw)
    data = orjson.loads(raw)
    if isinstance(data, dict):
        return _decode_v1(data)
    if data[0] == 2:
        data = [*data, [], [], []]
    elif data[0] != _JSON_FORMAT:
        # Written by a newer release (a rollback): read as this format, it would be misread.
        raise ValueError(f"customer encoded in format {data[0]!r}; this release reads formats 1 to {_FORMAT}")
    (
        _format,
        customer_id,
        seen,
        first_us,
        last_us,
        counts,
        survey_stamps,
        survey_values,
        survey_sum,
        latest,
        sentiment_stamps,
        sentiment_values,
        sentiment_sum,
        lifetime_net,
        money_stamps,
        money_values,
        recent_sum,
        version,
        csat,
        cltv,
        cltv_365d,
        ppp,
        previous_ppp,
        cause_event_id,
        cause_type,
        campaigns,
        channels,
        referrals,
    ) = data
    surveys, purchases, refunds, *moments = counts
    return CustomerState(
        customer_id,
        set(seen),
        first_us,
        last_us,
        surveys,
        purchases,
        refunds,
        moments,
        _join(survey_stamps, survey_values),
        Decimal(survey_sum),
        None if latest is None else (latest[0], latest[1], Decimal(latest[2])),
        _join(sentiment_stamps, sentiment_values),
        Decimal(sentiment_sum),
        Decimal(lifetime_net),
        _join(money_stamps, money_values),
        Decimal(recent_sum),
        version,
        Decimal(csat),
        Decimal(cltv),
        Decimal(cltv_365d),
        Decimal(ppp),
        None if previous_ppp is None else Decimal(previous_ppp),
        cause_event_id,
        cause_type,
        set(campaigns),
        set(channels),
        {share_id: (referrer, channel) for share_id, referrer, channel in referrals},
    )


def _unpairs(items: list[list[Any]]) -> list[tuple[int, Decimal]]:
    return [(int(ts), Decimal(value)) for ts, value in items]


def _decode_v1(data: dict[str, Any]) -> CustomerState:
    """The first format: an object with short keys, window values as [timestamp, value]."""
    counts = data["n"]
    published = data["p"]
    latest = data["ls"]
    window_surveys = _unpairs(data["ws"])
    sentiments = _unpairs(data["se"])
    recent_money = _unpairs(data["rm"])
    return CustomerState(
        customer_id=data["c"],
        seen=set(data["e"]),
        first_us=data["t"][0],
        last_us=data["t"][1],
        surveys=counts[0],
        purchases=counts[1],
        refunds=counts[2],
        moments=list(counts[3:7]),
        window_surveys=window_surveys,
        window_survey_sum=decimal_sum(window_surveys),
        latest_survey=None if latest is None else (latest[0], latest[1], Decimal(latest[2])),
        sentiments=sentiments,
        sentiment_sum=decimal_sum(sentiments),
        lifetime_net=Decimal(data["ln"]),
        recent_money=recent_money,
        recent_sum=decimal_sum(recent_money),
        version=published[0],
        csat=Decimal(published[1]),
        cltv=Decimal(published[2]),
        cltv_365d=Decimal(published[3]),
        ppp=Decimal(published[4]),
        cause_event_id=published[5],
        cause_type=published[6],
        previous_ppp=None if published[7] is None else Decimal(published[7]),
    )
