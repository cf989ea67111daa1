"""Impact: what each campaign, channel and referrer is worth in PPP (SPEC.md, "Impact").

A customer contributes to one entry for each key it has in each dimension, and an entry is
the sum of its customers' contributions. So an entry is kept by adding the *change* of a
customer's contribution whenever that customer's scores or keys move (`add_change`):
streamed, never recomputed, and the same arithmetic in `journey replay --impact`.

Sums are integers: cents for the published scores (which have two decimals) and
millionths for the attributed shares (rounded to six decimals, SPEC.md). That is exact
decimal arithmetic, independent of order, and a tenth of the cost of `Decimal` additions
on the worker's path; they become decimals only when an entry is written out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal
from operator import add, sub
from typing import Any

import orjson

from journey.customer import CustomerState

__all__ = [
    "ALL_KEY",
    "DIMENSIONS",
    "Contribution",
    "ImpactEntry",
    "add_change",
    "apply_change",
    "contribution",
    "decode_change",
    "decode_entry",
    "dimension_counts",
    "encode_change",
    "encode_entry",
    "entry_key",
    "entry_message",
    "impact_report",
    "split_key",
    "with_comparisons",
]

DIMENSIONS = ("all", "campaign", "channel", "referrer", "referral_channel")
_KEYED = DIMENSIONS[1:]
ALL_KEY = "all/*"
_MOMENTS = ("zmot", "fmot", "smot", "umot")

# The sums of an entry, in this order (an entry's changes are lists of the same shape):
# customers, buyers, surveyed, referred, the four moments reached, then ppp, cltv and
# csat_sum in cents, then attributed_ppp and attributed_cltv in millionths.
_COUNTS = 8
_PPP, _CLTV, _CSAT, _ATTRIBUTED_PPP, _ATTRIBUTED_CLTV = 8, 9, 10, 11, 12
_SUMS = 13
_MICROS_PER_CENT = 10_000

Sums = list[int]


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one customer adds to each entry it is in: equal contributions, equal entries."""

    # customers (1), buyers, surveyed, referred, moments reached, ppp, cltv, csat (cents).
    base: tuple[int, ...]
    # The customer's keys, sorted, in the dimensions after `all`.
    keys: tuple[tuple[str, ...], ...]


def _cents(value: Decimal) -> int:
    # Published scores are quantized to two decimals, so this is exact.
    return int(value.scaleb(2))


def contribution(state: CustomerState) -> Contribution | None:
    """The customer's contribution, or None before its first event (it is in no entry)."""
    if state.version == 0:
        return None
    zmot, fmot, smot, umot = state.moments
    cltv = _cents(state.cltv)
    referrals = state.referrals
    base = (
        1,
        1 if cltv > 0 else 0,
        1 if state.surveys else 0,
        1 if referrals else 0,
        1 if zmot else 0,
        1 if fmot else 0,
        1 if smot else 0,
        1 if umot else 0,
        _cents(state.ppp),
        cltv,
        _cents(state.csat),
    )
    keys = (
        tuple(sorted(state.campaigns)),
        tuple(sorted(state.channels)),
        tuple(state.referred_by()) if referrals else (),
        tuple(state.referral_channels()) if referrals else (),
    )
    return Contribution(base, keys)


def _share(cents: int, keys: int) -> int:
    """`cents / keys` in millionths, rounded half-even: one key's linear-attribution share."""
    quotient, remainder = divmod(cents * _MICROS_PER_CENT, keys)
    if 2 * remainder > keys or (2 * remainder == keys and quotient % 2):
        quotient += 1
    return quotient


def entry_key(dimension: str, key: str) -> str:
    """`dimension/key`: the entry's key in the `impact` topic and in the tables."""
    return f"{dimension}/{key}"


def split_key(key: str) -> tuple[str, str]:
    """The dimension and the key of `dimension/key` (split at the first `/`)."""
    dimension, _, rest = key.partition("/")
    return dimension, rest


def _entries(given: Contribution) -> Iterator[tuple[str, Sums]]:
    """Each entry the customer is in, with what it adds there."""
    base = given.base
    ppp, cltv = base[_PPP], base[_CLTV]
    yield ALL_KEY, [*base, ppp * _MICROS_PER_CENT, cltv * _MICROS_PER_CENT]
    for dimension, keys in zip(_KEYED, given.keys, strict=True):
        if keys:
            count = len(keys)
            sums = [*base, _share(ppp, count), _share(cltv, count)]
            for key in keys:
                yield f"{dimension}/{key}", sums


def add_change(changes: dict[str, Sums], before: Contribution | None, after: Contribution | None) -> None:
    """Add to `changes` (entry key -> change of its sums) what moving a customer's
    contribution from `before` to `after` does to every entry it was or is in."""
    if before == after:
        return
    if before is not None and after is not None and before.keys == after.keys:
        # The usual case: same entries, new scores or flags. The same keys come in the same
        # order, and the entries of one dimension share one list, so each difference once.
        last: tuple[Sums | None, Sums] = (None, [])
        for (key, new), (_, old) in zip(_entries(after), _entries(before), strict=True):
            if last[0] is not new:
                last = (new, list(map(sub, new, old)))
            _accumulate(changes, key, last[1], add)
        return
    if before is not None:
        for key, sums in _entries(before):
            _accumulate(changes, key, sums, sub)
    if after is not None:
        for key, sums in _entries(after):
            _accumulate(changes, key, sums, add)


def _accumulate(changes: dict[str, Sums], key: str, sums: Sums, op: Any) -> None:
    known = changes.get(key)
    if known is None:
        changes[key] = sums.copy() if op is add else [-value for value in sums]
    else:
        changes[key] = list(map(op, known, sums))


@dataclass(slots=True)
class ImpactEntry:
    """One entry as its owner keeps it: the exact sums, the messages sent of it, and the
    offset of the last change applied, so that a change delivered again is not counted twice."""

    sums: Sums = field(default_factory=lambda: [0] * _SUMS)
    version: int = 0
    applied: int = -1


def apply_change(entry: ImpactEntry, change: Sums, offset: int) -> bool:
    """Add the change at `offset` (of the entry's changes partition) unless it is in already.

    Offsets only grow along a partition and an entry's changes all sit on one partition,
    so "at or before the last applied" is exactly "already counted"."""
    if offset <= entry.applied:
        return False
    entry.sums = list(map(add, entry.sums, change))
    entry.applied = offset
    return True


_ENTRY_FORMAT = 1


def encode_entry(entry: ImpactEntry) -> bytes:
    return orjson.dumps([_ENTRY_FORMAT, entry.sums, entry.version, entry.applied])


def decode_entry(raw: bytes) -> ImpactEntry:
    data = orjson.loads(raw)
    if data[0] != _ENTRY_FORMAT:
        raise ValueError(f"impact entry encoded in format {data[0]!r}; this release reads {_ENTRY_FORMAT}")
    return ImpactEntry(list(data[1]), data[2], data[3])


def encode_change(change: Sums) -> bytes:
    return orjson.dumps(change)


def decode_change(raw: bytes) -> Sums:
    change = orjson.loads(raw)
    if not (isinstance(change, list) and len(change) == _SUMS and all(type(item) is int for item in change)):
        raise ValueError("an impact change is a list of 13 integers")
    return change


def _money(cents: int) -> float:
    # Integer true division is correctly rounded: the float nearest to the two-decimal value.
    return cents / 100


def _money_of_micros(micros: int) -> float:
    """Millionths rounded half-even to cents, as a published sum."""
    cents, remainder = divmod(micros, _MICROS_PER_CENT)
    half = _MICROS_PER_CENT // 2
    if remainder > half or (remainder == half and cents % 2):
        cents += 1
    return _money(cents)


def entry_message(key: str, sums: Sums, version: int | None = None) -> dict[str, Any]:
    """The `impact` message of an entry (SPEC.md); without `version` when it is None."""
    dimension, name = split_key(key)
    message: dict[str, Any] = {
        "dimension": dimension,
        "key": name,
        "customers": sums[0],
        "buyers": sums[1],
        "surveyed": sums[2],
        "referred": sums[3],
        "moments": dict(zip(_MOMENTS, sums[4:_COUNTS], strict=True)),
        "ppp": _money(sums[_PPP]),
        "cltv": _money(sums[_CLTV]),
        "csat_sum": _money(sums[_CSAT]),
        "attributed_ppp": _money_of_micros(sums[_ATTRIBUTED_PPP]),
        "attributed_cltv": _money_of_micros(sums[_ATTRIBUTED_CLTV]),
    }
    if version is not None:
        message["version"] = version
    return message


# Comparisons are computed from the published sums at Python's default precision and
# rounded half-even once at the end (SPEC.md), whoever computes them.
_COMPARING = Context(prec=28, rounding=ROUND_HALF_EVEN)
_CENT = Decimal("0.01")
_TEN_THOUSANDTH = Decimal("0.0001")
_SIX_PERCENT = Decimal("0.06")


def _decimal(value: float | int) -> Decimal:
    # A published float is the shortest repr of its two-decimal value: read it back exactly.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    return None if denominator == 0 else _COMPARING.divide(numerator, denominator)


def _uplift(mine: Decimal | None, others: Decimal | None) -> Decimal | None:
    if mine is None or others is None or others == 0:
        return None
    return _COMPARING.subtract(_COMPARING.divide(mine, others), Decimal(1))


def _rounded(value: Decimal | None, places: Decimal) -> Decimal | None:
    return None if value is None else value.quantize(places, rounding=ROUND_HALF_EVEN, context=_COMPARING)


def _out(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class _Figures:
    """The published sums a comparison reads, as decimals."""

    customers: Decimal
    buyers: Decimal
    surveyed: Decimal
    ppp: Decimal
    csat_sum: Decimal

    @classmethod
    def of(cls, entry: Mapping[str, Any]) -> _Figures:
        return cls(
            *(_decimal(entry[name]) for name in ("customers", "buyers", "surveyed", "ppp", "csat_sum"))
        )

    def minus(self, other: _Figures) -> _Figures:
        return _Figures(
            *(
                _COMPARING.subtract(mine, theirs)
                for mine, theirs in zip(self.values(), other.values(), strict=True)
            )
        )

    def values(self) -> tuple[Decimal, ...]:
        return (self.customers, self.buyers, self.surveyed, self.ppp, self.csat_sum)

    def mean_ppp(self) -> Decimal | None:
        return _ratio(self.ppp, self.customers)

    def conversion(self) -> Decimal | None:
        return _ratio(self.buyers, self.customers)

    def mean_csat(self) -> Decimal | None:
        return _ratio(self.csat_sum, self.surveyed)


def with_comparisons(entry: Mapping[str, Any], everyone: Mapping[str, Any] | None) -> dict[str, Any]:
    """`entry` (a published entry) with the comparisons of SPEC.md, against `everyone` (the
    published `all` entry) for every entry but `all` itself."""
    mine = _Figures.of(entry)
    out = dict(entry)
    out["mean_ppp"] = _out(_rounded(mine.mean_ppp(), _CENT))
    out["conversion"] = _out(_rounded(mine.conversion(), _TEN_THOUSANDTH))
    out["mean_csat"] = _out(_rounded(mine.mean_csat(), _CENT))
    if entry["dimension"] == "all":
        referred, sharers = _decimal(entry["referred"]), _decimal(entry["moments"]["umot"])
        out["k_factor"] = _out(_rounded(_ratio(referred, sharers), _TEN_THOUSANDTH))
        return out
    # Outside the key: everyone else (O = all - E, count by count and sum by sum).
    others = _Figures.of(everyone).minus(mine) if everyone is not None else None
    ppp_uplift = conversion_uplift = csat_uplift = None
    if others is not None:
        ppp_uplift = _rounded(_uplift(mine.mean_ppp(), others.mean_ppp()), _TEN_THOUSANDTH)
        conversion_uplift = _rounded(_uplift(mine.conversion(), others.conversion()), _TEN_THOUSANDTH)
        csat_uplift = _rounded(_uplift(mine.mean_csat(), others.mean_csat()), _TEN_THOUSANDTH)
    out["ppp_uplift"] = _out(ppp_uplift)
    out["conversion_uplift"] = _out(conversion_uplift)
    out["csat_uplift"] = _out(csat_uplift)
    # Judged on the published (rounded) uplifts, so that a reader can check the flags; an
    # uplift that cannot be computed raises no flag.
    out["past_six_percent"] = conversion_uplift is not None and conversion_uplift >= _SIX_PERCENT
    out["harms_experience"] = (
        conversion_uplift is not None
        and csat_uplift is not None
        and conversion_uplift > 0
        and csat_uplift < 0
    )
    return out


def dimension_counts(keys: Iterable[str]) -> dict[str, int]:
    """How many entries each dimension has, every dimension named."""
    counts = dict.fromkeys(DIMENSIONS, 0)
    for key in keys:
        dimension = split_key(key)[0]
        if dimension in counts:
            counts[dimension] += 1
    return counts


def impact_report(contributions: Iterable[Contribution | None]) -> list[dict[str, Any]]:
    """Every entry with its comparisons, sorted by dimension then key (`journey replay --impact`)."""
    totals: dict[str, Sums] = {}
    for given in contributions:
        add_change(totals, None, given)
    published = {key: entry_message(key, sums) for key, sums in totals.items() if sums[0]}
    everyone = published.get(ALL_KEY)
    ordered = sorted(published, key=split_key)
    return [with_comparisons(published[key], everyone) for key in ordered]
