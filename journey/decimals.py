"""Decimal arithmetic shared by the scoring core and the state codec."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Context, Decimal

__all__ = ["EXACT", "ZERO", "decimal_sum", "round_cents"]

# Wide enough that sums of producer numbers stay exact, so folding a value out of a window
# subtracts exactly what adding it added: the result cannot depend on arrival order.
EXACT = Context(prec=60, rounding=ROUND_HALF_EVEN)
ZERO = Decimal(0)
_CENT = Decimal("0.01")


def decimal_sum(values: Iterable[tuple[int, Decimal]]) -> Decimal:
    """Sum of the values of (timestamp, value) pairs, exactly."""
    total = ZERO
    for _, value in values:
        total = EXACT.add(total, value)
    return total


def round_cents(value: Decimal) -> Decimal:
    """Two decimals, half-even: how every published score is rounded, once, at the end."""
    return value.quantize(_CENT, rounding=ROUND_HALF_EVEN, context=EXACT)
