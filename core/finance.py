"""Finance functions computed in code, so a figure in a reply never comes from the model's
arithmetic: growth, discounting, returns, payback, margins, ratios and loan payments.

Each function takes plain numbers (and dates for XIRR), refuses inputs for which the figure is
undefined with an ``InvalidInput`` that says why, and returns a float. Rates are fractions
(0.08 is 8 %). ``FORMULAS`` gives each one's formula as shown on a tool card.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from datetime import date

from core.errors import InvalidInput

MAX_FLOWS = 10_000
IRR_TOLERANCE = 1e-12

FORMULAS: dict[str, str] = {
    "pct_change": "(new − old) / |old|",
    "cagr": "(end / start)^(1 / years) − 1",
    "npv": "Σ cash_flow_t / (1 + rate)^t, t = 0, 1, …",
    "irr": "the rate at which Σ cash_flow_t / (1 + rate)^t = 0",
    "xirr": "the rate at which Σ cash_flow_i / (1 + rate)^((date_i − date_0) / 365) = 0",
    "payback_period": "years until the cumulative cash flow turns non-negative (interpolated)",
    "discounted_payback": "payback_period of cash_flow_t / (1 + rate)^t",
    "margin": "part / revenue",
    "ratio": "numerator / denominator",
    "loan_payment": "principal · r / (1 − (1 + r)^−n), r = annual_rate / periods_per_year, "
    "n = years · periods_per_year",
}


def _finite(name: str, value: object) -> float:
    # numbers.Real: NumPy's and pandas' scalars count too (a notebook passes those)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInput(name, f"{name} must be a number.")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput(name, f"{name} must be a finite number.")
    return number


def _flows(values: Sequence[float], name: str = "cash_flows") -> list[float]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise InvalidInput(name, f"{name} must be a list of numbers.")
    if not values:
        raise InvalidInput(name, f"{name} must not be empty.")
    if len(values) > MAX_FLOWS:
        raise InvalidInput(name, f"{name} may hold at most {MAX_FLOWS:,} values.")
    return [_finite(f"{name}[{i}]", v) for i, v in enumerate(values)]


def pct_change(old: float, new: float) -> float:
    """Percent change from ``old`` to ``new``, as a fraction (a fall from -10 to -5 is +50 %)."""
    old, new = _finite("old", old), _finite("new", new)
    if old == 0:
        raise InvalidInput("old", "The change from zero is undefined (old is 0).")
    return (new - old) / abs(old)


def cagr(start: float, end: float, years: float) -> float:
    """Compound annual growth rate from ``start`` to ``end`` over ``years``."""
    start, end, years = _finite("start", start), _finite("end", end), _finite("years", years)
    if years <= 0:
        raise InvalidInput("years", "years must be more than 0.")
    if start <= 0 or end < 0:
        raise InvalidInput(
            "start", "CAGR needs a positive start value and an end value of 0 or more."
        )
    return float((end / start) ** (1 / years) - 1)


def npv(rate: float, cash_flows: Sequence[float]) -> float:
    """Net present value of ``cash_flows`` (the first at t = 0, undiscounted) at ``rate``."""
    rate = _finite("rate", rate)
    if rate <= -1:
        raise InvalidInput("rate", "rate must be more than -100 %.")
    return math.fsum(cf / (1 + rate) ** t for t, cf in enumerate(_flows(cash_flows)))


def _root(f: Callable[[float], float], what: str) -> float:
    """A rate r > -1 with f(r) = 0, found by bracketing then bisection (robust where Newton's
    method wanders off); ``InvalidInput`` when the flows allow none."""
    low, high = -0.9, 1.0
    f_low, f_high = _safe(f, low), _safe(f, high)
    while f_high * f_low > 0 and (high < 1e15 or 1 + low > 1e-15):
        if high < 1e15:
            high *= 10
            f_high = _safe(f, high)
        if f_high * f_low > 0 and 1 + low > 1e-15:
            low = -1 + (1 + low) / 10
            f_low = _safe(f, low)
    if f_high * f_low > 0:
        raise InvalidInput(
            "cash_flows",
            f"No {what} exists for these cash flows: they need at least one sign change "
            "(money out, then money in, or the reverse).",
        )
    for _ in range(400):
        mid = (low + high) / 2
        f_mid = _safe(f, mid)
        if f_mid == 0 or high - low <= IRR_TOLERANCE * max(1.0, abs(mid)):
            return mid
        if (f_mid > 0) == (f_low > 0):
            low, f_low = mid, f_mid
        else:
            high = mid
    return (low + high) / 2


def _safe(f: Callable[[float], float], rate: float) -> float:
    """f(rate), with an overflow (a rate near -100 %) as the infinity it tends to."""
    try:
        return f(rate)
    except (OverflowError, ZeroDivisionError):
        return math.inf


def irr(cash_flows: Sequence[float]) -> float:
    """Internal rate of return: the rate at which the NPV of ``cash_flows`` is zero."""
    flows = _flows(cash_flows)
    if not (any(cf > 0 for cf in flows) and any(cf < 0 for cf in flows)):
        raise InvalidInput(
            "cash_flows", "IRR needs both money out (negative) and money in (positive)."
        )
    return _root(lambda r: math.fsum(cf / (1 + r) ** t for t, cf in enumerate(flows)), "IRR")


def xirr(cash_flows: Sequence[float], dates: Sequence[date | str]) -> float:
    """IRR of cash flows on given dates (Actual/365 from the first date), as Excel's XIRR."""
    flows = _flows(cash_flows)
    if len(dates) != len(flows):
        raise InvalidInput("dates", "Give one date per cash flow.")
    days = [_as_date(d, i) for i, d in enumerate(dates)]
    if not (any(cf > 0 for cf in flows) and any(cf < 0 for cf in flows)):
        raise InvalidInput(
            "cash_flows", "XIRR needs both money out (negative) and money in (positive)."
        )
    first = min(days)
    years = [(d - first).days / 365 for d in days]
    return _root(
        lambda r: math.fsum(cf / (1 + r) ** y for cf, y in zip(flows, years, strict=True)),
        "XIRR",
    )


def _as_date(value: date | str, index: int) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise InvalidInput("dates", f"dates[{index}] is not a date (YYYY-MM-DD).") from None


def payback_period(cash_flows: Sequence[float]) -> float:
    """Years until the cumulative cash flow (the first at t = 0) reaches zero, interpolated
    within the year it turns; ``InvalidInput`` when it never does."""
    flows = _flows(cash_flows)
    total = 0.0
    for t, cf in enumerate(flows):
        before, total = total, total + cf
        if total >= 0 and t > 0 and before < 0:
            return t - 1 + (-before / cf)
        if total >= 0 and t == 0:
            return 0.0
    raise InvalidInput("cash_flows", "The investment is never paid back within these flows.")


def discounted_payback(rate: float, cash_flows: Sequence[float]) -> float:
    """Payback period of the cash flows discounted at ``rate``."""
    rate = _finite("rate", rate)
    if rate <= -1:
        raise InvalidInput("rate", "rate must be more than -100 %.")
    flows = _flows(cash_flows)
    return payback_period([cf / (1 + rate) ** t for t, cf in enumerate(flows)])


def margin(part: float, revenue: float) -> float:
    """A margin (gross, operating, net, EBITDA...): ``part`` over ``revenue``."""
    part, revenue = _finite("part", part), _finite("revenue", revenue)
    if revenue == 0:
        raise InvalidInput("revenue", "A margin of zero revenue is undefined.")
    return part / revenue


def ratio(numerator: float, denominator: float) -> float:
    """A financial ratio (current, quick, debt-to-equity, interest coverage, ROE, ROA...)."""
    numerator = _finite("numerator", numerator)
    denominator = _finite("denominator", denominator)
    if denominator == 0:
        raise InvalidInput("denominator", "The ratio's denominator is 0: it is undefined.")
    return numerator / denominator


def loan_payment(
    principal: float, annual_rate: float, years: float, periods_per_year: int = 12
) -> float:
    """The level payment per period that repays ``principal`` (an annuity, paid in arrears)."""
    principal = _finite("principal", principal)
    annual_rate, years = _finite("annual_rate", annual_rate), _finite("years", years)
    periods: object = periods_per_year
    if isinstance(periods, bool) or not isinstance(periods, numbers.Integral):
        raise InvalidInput("periods_per_year", "periods_per_year must be a whole number.")
    if not 1 <= periods_per_year <= 365 or years <= 0:
        raise InvalidInput("years", "years must be more than 0, periods_per_year 1 to 365.")
    n = years * periods_per_year
    r = annual_rate / periods_per_year
    if r <= -1:
        raise InvalidInput("annual_rate", "annual_rate is too negative.")
    if r == 0:
        return principal / n
    # 1 - (1 + r)^-n, without the cancellation that makes it 0 for a tiny rate
    return float(principal * r / -math.expm1(-n * math.log1p(r)))
