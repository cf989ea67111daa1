"""Impact: what each campaign, channel and referrer is worth in PPP (SPEC.md, "Impact").

A customer contributes to one entry for each key it has in each dimension, and an entry is
the sum of its customers' contributions. So an entry is kept by adding the *change* of a
customer's contribution whenever that customer's scores or keys move (`add_change`):
streamed, never recomputed, and the same arithmetic in `journey replay --impact`.

Sums are integers: cents for the published scores (which have two decimals) and
millionths for the attributed shares (rounded to six decimals, SPEC.md). That is exact
decimal arithmetic, independent of order, and a fraction of the cost of `Decimal`
additions on the worker's path; they become decimals only when an entry is written out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, NamedTuple

import orjson

from journey.customer import CustomerState

__all__ = [
    "ALL_KEY",
    "DIMENSIONS",
    "Contribution",
    "ImpactEntry",
    "Packed",
    "add_change",
    "apply_change",
    "circle",
    "contribution",
    "decode_change",
    "decode_entry",
    "encode_change",
    "encode_entry",
    "entry_message",
    "impact_entries",
    "impact_report",
    "impact_totals",
    "pack",
    "split_key",
    "unpack",
    "with_comparisons",
]

DIMENSIONS = ("all", "campaign", "channel", "referrer", "referral_channel", "recovery")
ALL_KEY = "all/*"
_MOMENTS = ("zmot", "fmot", "smot", "umot")

# The sums of an entry, in this order (a change holds the same 16, packed: see `Packed`):
# customers, buyers, surveyed, referred, the four moments reached, then ppp, cltv and
# csat_sum in cents, then attributed_ppp and attributed_cltv in millionths, then the
# customers who reached both a moment and the one before it (FMOT after ZMOT, SMOT after
# FMOT, UMOT after SMOT): the circle's onward shares. The last three came later than the
# others: a change or an entry written before them holds 13 sums and reads as 16.
_COUNTS = 8
_PPP, _CLTV, _CSAT, _ATTRIBUTED_PPP, _ATTRIBUTED_CLTV = 8, 9, 10, 11, 12
_ONWARD = 13
_SUMS = 16
_SUMS_BEFORE_ONWARD = 13
_MICROS_PER_CENT = 10_000

Sums = list[int]

# A change to an entry's sums is one Python integer holding the 13 sums as signed 128-bit
# digits (sum i times 2**(128*i)): adding two changes adds every sum at once, in one
# integer addition, which is what makes a customer's change cost a few additions per entry
# on the worker's path instead of a list operation per sum. Digits stay far inside their
# range (a sum of a trillion customers' millionths is below 2**100), so every digit, and so
# every sum, comes back exactly (`unpack`).
Packed = int
_DIGIT = 128
_HALF = 1 << (_DIGIT - 1)
_MASK = (1 << _DIGIT) - 1
_PLACE = [1 << (_DIGIT * i) for i in range(_SUMS)]


def pack(sums: Sums) -> Packed:
    packed = 0
    for value, place in zip(sums, _PLACE, strict=True):
        packed += value * place
    return packed


def unpack(packed: Packed) -> Sums:
    sums = []
    for _ in range(_SUMS):
        value = packed & _MASK
        if value >= _HALF:
            value -= 1 << _DIGIT
        sums.append(value)
        packed = (packed - value) >> _DIGIT
    return sums


class Contribution(NamedTuple):
    """What one customer adds to each entry it is in: equal contributions, equal entries."""

    # customers (1), buyers, surveyed, referred, moments reached, ppp, cltv, csat (cents),
    # packed; the attributed sums depend on the dimension, so they are added per dimension.
    base: Packed
    ppp: int
    cltv: int
    # The customer's entries (`dimension/key`), in the dimensions after `all`.
    keys: tuple[tuple[str, ...], ...]


_HUNDRED = Decimal(100)


def _cents(value: Decimal) -> int:
    # Published scores have two decimals and far fewer than 26 digits: exact at the default
    # precision, and twice as fast as `scaleb`.
    return int(value * _HUNDRED)


_ONE, _BUYER, _SURVEYED, _REFERRED, _ZMOT, _FMOT, _SMOT, _UMOT = _PLACE[:_COUNTS]
_FMOT_AFTER_ZMOT, _SMOT_AFTER_FMOT, _UMOT_AFTER_SMOT = _PLACE[_ONWARD:_SUMS]
# Where each sum's digit starts: placing a value there is a shift, three times cheaper than
# multiplying by the digit's place.
_AT_PPP, _AT_CLTV, _AT_CSAT, _AT_ATTRIBUTED_PPP, _AT_ATTRIBUTED_CLTV = (
    _DIGIT * index for index in (_PPP, _CLTV, _CSAT, _ATTRIBUTED_PPP, _ATTRIBUTED_CLTV)
)


def contribution(state: CustomerState) -> Contribution | None:
    """The customer's contribution, or None before its first event (it is in no entry)."""
    if state.version == 0:
        return None
    zmot, fmot, smot, umot = state.moments
    ppp = _cents(state.ppp)
    cltv = _cents(state.cltv)
    referrals = state.referrals
    base = _ONE + (ppp << _AT_PPP) + (cltv << _AT_CLTV) + (_cents(state.csat) << _AT_CSAT)
    if cltv > 0:
        base += _BUYER
    if state.surveys:
        base += _SURVEYED
    if referrals:
        base += _REFERRED
    if zmot:
        base += _ZMOT
    if fmot:
        base += _FMOT
    if smot:
        base += _SMOT
    if umot:
        base += _UMOT
    if fmot and zmot:
        base += _FMOT_AFTER_ZMOT
    if smot and fmot:
        base += _SMOT_AFTER_FMOT
    if umot and smot:
        base += _UMOT_AFTER_SMOT
    keys = state.entry_keys
    if keys is None:
        keys = state.entry_keys = _entry_keys(state)
    return Contribution(base, ppp, cltv, keys)


def _entry_keys(state: CustomerState) -> tuple[tuple[str, ...], ...]:
    """The customer's entries in the dimensions after `all`.

    In the sets' own order, not sorted: a set that did not change iterates the same way,
    which is all that comparing two contributions of one customer needs (unequal keys only
    take the longer way in `add_change`)."""
    campaigns, channels, referrals = state.campaigns, state.channels, state.referrals
    recovery = state.recovery()
    return (
        tuple([f"campaign/{key}" for key in campaigns]) if campaigns else (),
        tuple([f"channel/{key}" for key in channels]) if channels else (),
        tuple([f"referrer/{key}" for key in {referrer for referrer, _ in referrals.values()}])
        if referrals
        else (),
        tuple([f"referral_channel/{key}" for key in {channel for _, channel in referrals.values()}])
        if referrals
        else (),
        (f"recovery/{recovery}",) if recovery is not None else (),
    )


def _divide(numerator: int, denominator: int) -> int:
    """`numerator / denominator` rounded half-even to a whole number, exactly."""
    quotient, remainder = divmod(numerator, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2):
        quotient += 1
    return quotient


def _share(cents: int, keys: int) -> int:
    """`cents / keys` in millionths, rounded half-even: one key's linear-attribution share."""
    return _divide(cents * _MICROS_PER_CENT, keys)


def split_key(key: str) -> tuple[str, str]:
    """The dimension and the key of `dimension/key` (split at the first `/`)."""
    dimension, _, rest = key.partition("/")
    return dimension, rest


def _attributed(ppp: int, cltv: int, keys: int) -> Packed:
    """The attributed sums of a customer worth `ppp` and `cltv` (cents) in an entry of a
    dimension where it has `keys` keys: each its share, rounded to millionths."""
    if keys == 1:
        return ((ppp * _MICROS_PER_CENT) << _AT_ATTRIBUTED_PPP) + (
            (cltv * _MICROS_PER_CENT) << _AT_ATTRIBUTED_CLTV
        )
    return (_share(ppp, keys) << _AT_ATTRIBUTED_PPP) + (_share(cltv, keys) << _AT_ATTRIBUTED_CLTV)


_ALL = (ALL_KEY,)


def _entries(given: Contribution) -> Iterator[tuple[tuple[str, ...], Packed]]:
    """The customer's entries, a dimension at a time, with what it adds to each."""
    yield _ALL, given.base + _attributed(given.ppp, given.cltv, 1)
    for keys in given.keys:
        if keys:
            yield keys, given.base + _attributed(given.ppp, given.cltv, len(keys))


def add_change(
    changes: dict[str, Packed], before: Contribution | None, after: Contribution | None
) -> list[str]:
    """Add to `changes` (entry key -> change of its sums, packed) what moving a customer's
    contribution from `before` to `after` does to every entry it was or is in; return the
    entries that were not in `changes` yet (a caller sizing what it sends needs them)."""
    added: list[str] = []
    if before == after:
        return added
    moves: list[tuple[tuple[str, ...], Packed]]
    if before is not None and after is not None and before.keys == after.keys:
        # The usual case: the same entries, new scores or flags. What does not depend on the
        # key changes by one difference; the attributed sums by one per number of keys.
        base = after.base - before.base
        if after.ppp == before.ppp and after.cltv == before.cltv:
            # Nor do the attributed sums, in any dimension.
            moves = [(keys, base) for keys in (_ALL, *after.keys) if keys]
        else:
            by_count: dict[int, Packed] = {}
            moves = []
            for keys in (_ALL, *after.keys):
                count = len(keys)
                if count:
                    change = by_count.get(count)
                    if change is None:
                        change = by_count[count] = (
                            base
                            + _attributed(after.ppp, after.cltv, count)
                            - _attributed(before.ppp, before.cltv, count)
                        )
                    moves.append((keys, change))
    else:
        moves = [(keys, -sums) for keys, sums in _entries(before)] if before is not None else []
        if after is not None:
            moves += _entries(after)
    for keys, change in moves:
        for entry in keys:
            known = changes.get(entry)
            if known is None:
                added.append(entry)
                changes[entry] = change
            else:
                changes[entry] = known + change
    return added


@dataclass(slots=True)
class ImpactEntry:
    """One entry as its owner keeps it: the exact sums (packed), the messages sent of it,
    and the offset of the last change applied, so that a change delivered again is not
    counted twice."""

    sums: Packed = 0
    version: int = 0
    applied: int = -1
    # Whether the onward sums count every customer: not for an entry kept from before they
    # existed (format 1), whose customers counted then are in none of them.
    onward_known: bool = True


def apply_change(entry: ImpactEntry, change: Packed, offset: int) -> bool:
    """Add the change at `offset` (of the entry's changes partition) unless it is in already.

    Offsets only grow along a partition and an entry's changes all sit on one partition,
    so "at or before the last applied" is exactly "already counted"."""
    if offset <= entry.applied:
        return False
    entry.sums += change
    entry.applied = offset
    return True


_ENTRY_FORMAT = 2


def encode_entry(entry: ImpactEntry, sums: Sums | None = None) -> bytes:
    """The entry's table record (format 2): its 16 sums as a JSON list (`sums`, when the
    caller has them unpacked already), its version, its last applied offset, and whether
    its onward sums are known."""
    return orjson.dumps(
        [
            _ENTRY_FORMAT,
            unpack(entry.sums) if sums is None else sums,
            entry.version,
            entry.applied,
            entry.onward_known,
        ]
    )


def decode_entry(raw: bytes) -> ImpactEntry:
    """Formats 2 and 1; an entry of format 1 (13 sums) has its onward sums at 0, unknown."""
    data = orjson.loads(raw)
    if data[0] == _ENTRY_FORMAT:
        return ImpactEntry(pack(data[1]), data[2], data[3], data[4])
    if data[0] == 1:
        return ImpactEntry(
            pack([*data[1], *[0] * (_SUMS - _SUMS_BEFORE_ONWARD)]), data[2], data[3], onward_known=False
        )
    raise ValueError(f"impact entry encoded in format {data[0]!r}; this release reads 1 and {_ENTRY_FORMAT}")


# A change on the internal changes topic: the packed integer itself, little-endian and
# signed, in a fixed width (16 digits of 128 bits and a byte for the sign): written and
# read in a fraction of a microsecond, where a JSON list of 16 numbers cost several. A
# change of the release before holds 13 digits, and reads as the same integer.
_CHANGE_BYTES = _SUMS * _DIGIT // 8 + 1
_CHANGE_WIDTHS = frozenset({_CHANGE_BYTES, _SUMS_BEFORE_ONWARD * _DIGIT // 8 + 1})


def encode_change(change: Packed) -> bytes:
    return change.to_bytes(_CHANGE_BYTES, "little", signed=True)


def decode_change(raw: bytes) -> Packed:
    if len(raw) not in _CHANGE_WIDTHS:
        raise ValueError(f"an impact change is {_CHANGE_BYTES} bytes, not {len(raw)}")
    return int.from_bytes(raw, "little", signed=True)


def _money(cents: int) -> float:
    # Integer true division is correctly rounded: the float nearest to the two-decimal value.
    return cents / 100


def _money_of_micros(micros: int) -> float:
    """Millionths rounded half-even to cents, as a published sum."""
    return _money(_divide(micros, _MICROS_PER_CENT))


def entry_message(
    key: str, sums: Sums, version: int | None = None, *, onward_known: bool = True
) -> dict[str, Any]:
    """The `impact` message of an entry (SPEC.md); without `version` when it is None.
    `moments_onward` (beyond SPEC.md) is null where the onward sums are not known."""
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
        "moments_onward": dict(zip(_MOMENTS[1:], sums[_ONWARD:_SUMS], strict=True)) if onward_known else None,
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


def _k_factor(everyone: Mapping[str, Any]) -> Any:
    """Customers brought in by referrals per customer who shared (the `all` entry's)."""
    referred, sharers = _decimal(everyone["referred"]), _decimal(everyone["moments"]["umot"])
    return _out(_rounded(_ratio(referred, sharers), _TEN_THOUSANDTH))


def with_comparisons(entry: Mapping[str, Any], everyone: Mapping[str, Any] | None) -> dict[str, Any]:
    """`entry` (a published entry) with the comparisons of SPEC.md, against `everyone` (the
    published `all` entry) for every entry but `all` itself."""
    mine = _Figures.of(entry)
    out = dict(entry)
    out["mean_ppp"] = _out(_rounded(mine.mean_ppp(), _CENT))
    out["conversion"] = _out(_rounded(mine.conversion(), _TEN_THOUSANDTH))
    out["mean_csat"] = _out(_rounded(mine.mean_csat(), _CENT))
    if entry["dimension"] == "all":
        out["k_factor"] = _k_factor(entry)
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


def circle(everyone: Mapping[str, Any]) -> dict[str, Any]:
    """The journey's circle from the published `all` entry: the customers at each moment,
    the share of the customers at each moment who also reached the next one (`onward`, a
    fraction from 0 to 1 rounded like the other ratios; None where it cannot be known: no
    customer at the moment before, or an entry kept from before the onward sums), and the
    arc back to ZMOT: customers `referred` and the `k_factor`."""
    moments = everyone["moments"]
    both = everyone.get("moments_onward")
    onward: dict[str, float | None] = {}
    for moment, before in zip(_MOMENTS[1:], _MOMENTS[:-1], strict=True):
        reached = None if both is None else _decimal(both[moment])
        share = None if reached is None else _ratio(reached, _decimal(moments[before]))
        onward[moment] = _out(_rounded(share, _TEN_THOUSANDTH))
    return {
        "moments": dict(moments),
        "onward": onward,
        "referred": everyone["referred"],
        "k_factor": _k_factor(everyone),
    }


def impact_entries(totals: Mapping[str, Packed]) -> list[dict[str, Any]]:
    """Every entry of `totals` (entry key -> its sums, packed) that has a customer, with its
    comparisons, sorted by dimension then key (`journey replay --impact`)."""
    published = {key: entry_message(key, unpack(sums)) for key, sums in totals.items()}
    published = {key: entry for key, entry in published.items() if entry["customers"]}
    everyone = published.get(ALL_KEY)
    return [with_comparisons(published[key], everyone) for key in sorted(published, key=split_key)]


def impact_totals(contributions: Iterable[Contribution | None]) -> dict[str, Packed]:
    """Every entry's sums (packed) over a set of customers' contributions."""
    totals: dict[str, Packed] = {}
    for given in contributions:
        add_change(totals, None, given)
    return totals


def impact_report(contributions: Iterable[Contribution | None]) -> list[dict[str, Any]]:
    """The entries a set of customers' contributions make, with their comparisons."""
    return impact_entries(impact_totals(contributions))
