"""The second moment (SPEC.md, "The second moment"): what failures and recoveries are worth.

A customer's `recovery` is kept by the core (`CustomerState.recovery`); this module reads
the three `recovery` impact entries side by side, and says which customers the model warns
about: two or more failures and no good SMOT after the latest (`at_risk`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from journey.customer import RECOVERY_KEYS, CustomerState

__all__ = ["AT_RISK_FAILURES", "at_risk", "second_moment"]

# "Unless it starts to happen all the time": from the second unrecovered failure on.
AT_RISK_FAILURES = 2
_COMPARING = Context(prec=28, rounding=ROUND_HALF_EVEN)
_TEN_THOUSANDTH = Decimal("0.0001")


def at_risk(state: CustomerState) -> bool:
    """Two or more SMOT failures and no good SMOT after the latest one."""
    return state.smot_failures >= AT_RISK_FAILURES and state.recovery() == "unrecovered"


def _number(value: Any) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    return None if denominator == 0 else _COMPARING.divide(numerator, denominator)


def _rounded(value: Decimal | None) -> float | None:
    return None if value is None else float(value.quantize(_TEN_THOUSANDTH, context=_COMPARING))


def _verdict(smooth: int, recovered: int, difference: float | None) -> str:
    if not smooth or not recovered:
        return "Not enough customers yet to compare recovered customers with smooth ones."
    if difference is None:
        return "Smooth customers are worth nothing yet: no comparison in PPP."
    if difference > 0:
        return (
            f"Recovered customers are worth {difference:.1%} more in mean PPP than smooth ones: "
            "the service-recovery paradox holds here."
        )
    if difference < 0:
        return (
            f"Recovered customers are worth {-difference:.1%} less in mean PPP than smooth ones: "
            "a failure costs value even when it is recovered."
        )
    return "Recovered customers are worth as much in mean PPP as smooth ones."


def second_moment(entries: Mapping[str, Mapping[str, Any] | None], at_risk_count: int) -> dict[str, Any]:
    """The second moment at a glance, from the published `recovery` entries (key -> entry,
    None when it has no customer) and the count of customers at risk.

    `failed`: customers with a SMOT failure; `recovered`: those of them recovered;
    `recovery_rate`: recovered / failed; `recovered_vs_smooth`: the recovered customers'
    mean PPP over the smooth customers' minus 1 (rounded half-even to 4 decimals, null
    without both); `verdict`: which way it goes, in words."""
    customers = {key: int((entries.get(key) or {}).get("customers", 0)) for key in RECOVERY_KEYS}
    ppp = {key: _number((entries.get(key) or {}).get("ppp", 0)) for key in RECOVERY_KEYS}
    failed = customers["recovered"] + customers["unrecovered"]
    means = {key: _ratio(ppp[key], Decimal(customers[key])) for key in RECOVERY_KEYS}
    smooth_mean, recovered_mean = means["smooth"], means["recovered"]
    difference = None
    if smooth_mean is not None and recovered_mean is not None and smooth_mean != 0:
        difference = _rounded(_COMPARING.subtract(_COMPARING.divide(recovered_mean, smooth_mean), Decimal(1)))
    return {
        "smooth": customers["smooth"],
        "failed": failed,
        "recovered": customers["recovered"],
        "unrecovered": customers["unrecovered"],
        "recovery_rate": _rounded(_ratio(Decimal(customers["recovered"]), Decimal(failed))),
        "at_risk": at_risk_count,
        "at_risk_rule": f"{AT_RISK_FAILURES} or more SMOT failures and no good SMOT after the latest",
        "recovered_vs_smooth": difference,
        "verdict": _verdict(customers["smooth"], customers["recovered"], difference),
    }
