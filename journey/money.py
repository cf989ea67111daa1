"""Exchange rates into the base currency, read from the JSON file `JOURNEY_FX_RATES` names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

__all__ = ["FxRates", "load_rates"]


class FxRates:
    """Units of base currency per unit of each known currency; the base itself is 1."""

    __slots__ = ("base", "rates")

    def __init__(self, base: str, rates: dict[str, Decimal]) -> None:
        self.base = base
        self.rates = {**rates, base: Decimal(1)}

    def to_base(self, amount: Decimal, currency: str) -> Decimal:
        return amount * self.rates[currency]

    def __contains__(self, currency: object) -> bool:
        return currency in self.rates

    def __iter__(self) -> Iterator[str]:
        return iter(self.rates)

    def __len__(self) -> int:
        return len(self.rates)


def load_rates(path: Path | None, base: str) -> FxRates:
    """Read `{"EUR": 1.08, ...}`; a missing path means only the base currency is known.

    Raises ValueError with a one-line reason for a file that cannot be used.
    """
    if path is None:
        return FxRates(base, {})
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read FX rates file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except ValueError as exc:
        raise ValueError(f"FX rates file {path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f'FX rates file {path} must hold an object like {{"EUR": 1.08}}')
    rates: dict[str, Decimal] = {}
    for code, rate in data.items():
        if not (isinstance(code, str) and len(code) == 3 and code.isalpha() and code.isupper()):
            raise ValueError(f"FX rates file {path}: {code!r} is not an ISO 4217 code")
        if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0:
            raise ValueError(f"FX rates file {path}: rate of {code} must be a positive number")
        rates[code] = rate
    return FxRates(base, rates)
