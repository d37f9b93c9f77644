"""Finance functions against textbook and spreadsheet values, and properties that must hold
whatever the inputs (hypothesis)."""

from __future__ import annotations

import math
from datetime import date

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from core import finance
from core.errors import InvalidInput

# --- known values ----------------------------------------------------------------------------


def test_cagr_of_the_issues_example() -> None:
    """$120M in 2019 to $210M in 2024: five years, 11.84 % a year (not "0.04 %")."""
    assert finance.cagr(120, 210, 5) == pytest.approx(0.118427, abs=1e-6)


def test_npv_and_irr_of_a_textbook_project() -> None:
    flows = [-1000, 300, 400, 500]
    assert finance.npv(0.10, flows) == pytest.approx(-21.0368, abs=1e-4)
    assert finance.irr(flows) == pytest.approx(0.088963, abs=1e-6)


def test_xirr_matches_excels_documented_example() -> None:
    flows = [-10000, 2750, 4250, 3250, 2750]
    dates = ["2008-01-01", "2008-03-01", "2008-10-30", "2009-02-15", "2009-04-01"]
    assert finance.xirr(flows, dates) == pytest.approx(0.373362535, abs=1e-8)
    assert finance.xirr(flows, [date.fromisoformat(d) for d in dates]) == pytest.approx(
        0.373362535, abs=1e-8
    )


def test_a_30_year_mortgage_payment() -> None:
    assert finance.loan_payment(200_000, 0.06, 30) == pytest.approx(1199.10, abs=0.005)
    assert finance.loan_payment(12_000, 0.0, 1) == pytest.approx(1000.0)


def test_payback_interpolates_within_the_year() -> None:
    assert finance.payback_period([-1000, 300, 400, 500]) == pytest.approx(2.6)
    assert finance.discounted_payback(0.10, [-1000, 500, 500, 500]) == pytest.approx(
        2 + (1000 - 500 / 1.1 - 500 / 1.21) / (500 / 1.331)
    )


def test_changes_margins_and_ratios() -> None:
    assert finance.pct_change(80, 100) == pytest.approx(0.25)
    assert finance.pct_change(-10, -5) == pytest.approx(0.5)  # a smaller loss is a rise
    assert finance.margin(45, 180) == pytest.approx(0.25)
    assert finance.ratio(1.6, 2.0) == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: finance.cagr(0, 10, 5), "positive start"),
        (lambda: finance.cagr(10, 20, 0), "years must be more than 0"),
        (lambda: finance.pct_change(0, 5), "from zero is undefined"),
        (lambda: finance.irr([100, 200]), "both money out"),
        (lambda: finance.irr([]), "must not be empty"),
        (lambda: finance.npv(-1, [1]), "more than -100"),
        (lambda: finance.margin(1, 0), "zero revenue"),
        (lambda: finance.ratio(1, 0), "denominator is 0"),
        (lambda: finance.payback_period([-100, 10, 10]), "never paid back"),
        (lambda: finance.xirr([-1, 2], ["2024-01-01"]), "one date per cash flow"),
        (lambda: finance.xirr([-1, 2], ["2024-01-01", "soon"]), "not a date"),
        (lambda: finance.cagr(float("nan"), 10, 1), "finite"),
        (lambda: finance.cagr(True, 10, 1), "must be a number"),  # type: ignore[arg-type]
        (lambda: finance.loan_payment(1, 0.05, 1, 0), "periods_per_year 1 to 365"),
    ],
)
def test_undefined_figures_are_refused_with_the_reason(call: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call()  # type: ignore[operator]


# --- properties ----------------------------------------------------------------------------

money = st.floats(min_value=1, max_value=1e9, allow_nan=False, allow_infinity=False)
rates = st.floats(min_value=-0.5, max_value=2.0, allow_nan=False)


@given(start=money, end=money, years=st.floats(min_value=0.25, max_value=60))
def test_growing_at_the_cagr_reaches_the_end_value(start: float, end: float, years: float) -> None:
    """Over any growth an analyst meets (above -99 % a year): near -100 % the rate has too
    few digits left for the check."""
    rate = finance.cagr(start, end, years)
    assume(rate > -0.99)
    # 1 + rate carries the float error of rate itself, which start then scales
    assert math.isclose(start * (1 + rate) ** years, end, rel_tol=1e-9, abs_tol=1e-12 * start)


@given(
    outlay=money,
    inflows=st.lists(st.floats(min_value=1, max_value=1e9), min_size=1, max_size=30),
)
def test_the_npv_at_the_irr_is_zero(outlay: float, inflows: list[float]) -> None:
    """For projects returning at least 1 % of their outlay: near an IRR of -100 % the NPV
    moves by millions for a rate change in its last digit."""
    assume(sum(inflows) >= outlay / 100)
    flows = [-outlay, *inflows]
    rate = finance.irr(flows)
    scale = outlay + sum(inflows)
    assert abs(finance.npv(rate, flows)) <= 1e-6 * scale


@given(principal=money, rate=st.floats(min_value=0, max_value=0.3), years=st.integers(1, 40))
def test_the_loan_payment_repays_the_loan_exactly(
    principal: float, rate: float, years: int
) -> None:
    payment = finance.loan_payment(principal, rate, years, 12)
    balance = principal
    for _ in range(years * 12):
        balance = balance * (1 + rate / 12) - payment
    assert math.isclose(balance, 0, abs_tol=1e-6 * principal)


@given(rate=rates, flows=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20))
def test_npv_is_linear_in_the_flows(rate: float, flows: list[float]) -> None:
    doubled = finance.npv(rate, [2 * f for f in flows])
    assert doubled == pytest.approx(2 * finance.npv(rate, flows), rel=1e-9, abs=1e-6)
