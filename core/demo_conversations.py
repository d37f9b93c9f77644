"""Finance conversations for demo data and benchmarks: a topic's questions and answers with
figures drawn at random (bridges, margins, DCF, working capital, covenants...), consistent
within a conversation so the numbers in an answer follow from those in the question."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

_COMPANIES = ["Northwind", "Contoso", "Fabrikam", "Globex", "Initech", "Umbrella Retail", "Acme"]
_QUARTERS = ["Q1", "Q2", "Q3", "Q4"]


Figures = Callable[[random.Random], dict[str, str]]


def _m(value: float) -> str:
    return f"${value:,.1f}m"


def _p(value: float) -> str:
    return f"{value * 100:.1f}%"


# Each topic's figures are drawn together so that they agree with each other (a bridge adds up,
# a margin is EBITDA over revenue): analysts reading the demo check the arithmetic.


def _bridge(rng: random.Random) -> dict[str, str]:
    # The answer says volume explains most of the growth and FX mostly offsets pricing.
    start, volume = rng.uniform(40, 900), rng.uniform(0.03, 0.12)
    price = volume * rng.uniform(0.2, 0.7)
    fx = price * rng.uniform(0.5, 0.9)
    return {
        "m1": _m(start),
        "m2": _m(start * (1 + volume + price - fx)),
        "p1": _p(volume),
        "p2": _p(price),
        "p3": _p(fx),
        "p4": _p(volume + price),
        "p5": _p(volume + price - fx),
    }


def _margin(rng: random.Random) -> dict[str, str]:
    revenue, margin = rng.uniform(80, 900), rng.uniform(0.08, 0.28)
    return {
        "m1": _m(revenue * margin),
        "m2": _m(revenue),
        "m3": _m(revenue * margin * rng.uniform(0.02, 0.08)),
        "p1": _p(margin + rng.uniform(0.01, 0.06)),  # the answer says it is below the median
        "p2": _p(margin),
    }


def _dcf(rng: random.Random) -> dict[str, str]:
    fcf, growth, wacc, g = (
        rng.uniform(20, 300),
        rng.uniform(0.02, 0.08),
        rng.uniform(0.07, 0.11),
        0.02,
    )

    def value(rate: float) -> tuple[float, float]:
        flows = [fcf * (1 + growth) ** t for t in range(6)]
        explicit = sum(flows[t] / (1 + rate) ** (t + 1) for t in range(5))
        terminal = flows[5] / (rate - g) / (1 + rate) ** 5
        return explicit + terminal, terminal

    ev, terminal = value(wacc)
    return {
        "m1": _m(fcf),
        "m3": _m(ev * rng.uniform(0.1, 0.35)),
        "m4": _m(ev),
        "p1": _p(growth),
        "p2": _p(wacc),
        "p3": _p(terminal / ev),
        "p4": _p(1 - value(wacc + 0.005)[0] / ev),
    }


def _working_capital(rng: random.Random) -> dict[str, str]:
    revenue = rng.uniform(60, 900)
    return {
        "m1": _m(revenue * rng.uniform(0.03, 0.1)),
        "m2": _m(revenue),
        "m3": _m(revenue / 91 * 11),  # 11 more days of a quarter's revenue
        "p1": _p(rng.uniform(0.05, 0.2)),
    }


def _covenant(rng: random.Random) -> dict[str, str]:
    ebitda, leverage = rng.uniform(40, 400), rng.uniform(1.5, 3.0)
    net_debt = ebitda * leverage
    draw = ebitda * rng.uniform(0.05, 3.5 - leverage) * 0.8
    return {
        "m1": _m(ebitda),
        "m3": _m(draw),
        "m4": _m(net_debt),
        "p2": _p(1 - leverage / 3.5),
        "p3": _p(1 - (net_debt + draw) / ebitda / 3.5),
    }


def _variance(rng: random.Random) -> dict[str, str]:
    budget = rng.uniform(40, 400)
    over = budget * rng.uniform(0.02, 0.12)
    return {
        "m1": _m(budget),
        "m2": _m(budget + over),
        "m3": _m(over),
        "m4": _m(over * rng.uniform(1.5, 3.0)),
        "p1": _p(over / budget),
        "n1": str(rng.randint(3, 25)),
    }


def _cash(rng: random.Random) -> dict[str, str]:
    minimum = rng.uniform(5, 40)
    return {"m1": _m(minimum * rng.uniform(1.1, 1.6)), "m3": _m(minimum)}


def _lease(rng: random.Random) -> dict[str, str]:
    payments = rng.uniform(5, 80)
    return {"m1": _m(payments), "m4": _m(payments * rng.uniform(4, 8))}


def _values(rng: random.Random, figures: Figures) -> dict[str, str]:
    return {"co": rng.choice(_COMPANIES), "q": rng.choice(_QUARTERS)} | figures(rng)


# Each topic: a title pattern, turns of (question, answer) templates, and the function that
# draws the topic's figures.
_TOPICS: list[tuple[str, list[tuple[str, str]], Figures]] = [
    (
        "{co} {q} revenue bridge",
        [
            (
                "Build a revenue bridge for {co} from {q} last year ({m1}) to {q} this year "
                "({m2}). Volume was up {p1}, price/mix added {p2}, FX was a headwind.",
                "Here is the bridge from {m1} to {m2}:\n\n| Driver | Impact |\n|---|---|\n"
                "| Volume | +{p1} |\n| Price/mix | +{p2} |\n| FX | −{p3} |\n\nVolume explains most "
                "of the growth; the FX headwind of {p3} mostly offsets price increases in EMEA. "
                "I would check whether the price/mix figure includes the new premium tier.",
            ),
            (
                "How should I present the FX effect to the CFO?",
                "Show revenue at constant currency next to reported revenue. At constant "
                "currency growth is {p4} instead of the reported {p5}; state the average rates "
                "used and keep the translation effect separate from transaction hedging gains.",
            ),
            (
                "Draft two sentences for the board pack.",
                "Revenue grew to {m2} in {q}, driven by volume (+{p1}) and pricing (+{p2}). "
                "Adverse currency movements reduced reported growth by {p3}.",
            ),
        ],
        _bridge,
    ),
    (
        "EBITDA margin – {co}",
        [
            (
                "{co} reported EBITDA of {m1} on revenue of {m2}. What is the margin and how "
                "does it compare with a peer median of {p1}?",
                "EBITDA margin is EBITDA divided by revenue, here {p2}. That is below the peer "
                "median of {p1}; the gap is mostly gross margin, since opex as a share of "
                "revenue is in line with peers.",
            ),
            (
                "Which one-off items should I adjust for?",
                "Typical adjustments: restructuring costs ({m3} disclosed), impairment, "
                "gains on asset sales and share-based compensation if peers exclude it. Adjust "
                "consistently across the peer set, and show the bridge from reported to "
                "adjusted EBITDA.",
            ),
        ],
        _margin,
    ),
    (
        "DCF for {co}",
        [
            (
                "Set up a DCF for {co}: free cash flow next year {m1}, growth {p1} for five "
                "years, terminal growth 2%, WACC {p2}.",
                "Discount each year's free cash flow at {p2}: FCF_t = {m1} × (1 + {p1})^(t−1). "
                "Terminal value at year 5 = FCF_6 / (WACC − g). With these inputs enterprise "
                "value is about {m4}; the terminal value is roughly {p3} of it, so the result "
                "is very sensitive to WACC.",
            ),
            (
                "Show me a sensitivity table for WACC and terminal growth.",
                "Use WACC from {p2} − 1pp to + 1pp in 0.5pp steps against terminal growth of "
                "1.5%, 2.0% and 2.5%. Each +0.5pp of WACC lowers the value by roughly {p4}; "
                "check that WACC stays well above g in every cell.",
            ),
            (
                "What net debt figure should I subtract?",
                "Use debt including leases (IFRS 16) minus cash, as of the valuation date: "
                "{m3}. Add minority interests and subtract associates if material.",
            ),
        ],
        _dcf,
    ),
    (
        "Working capital review {q}",
        [
            (
                "DSO went from 41 to 52 days at {co} this quarter. What could explain it?",
                "An 11-day rise in DSO usually means slower collections, a shift to customers "
                "with longer terms, or revenue booked late in the quarter. With quarterly "
                "revenue of {m2} that ties up about {m3} of extra receivables.",
            ),
            (
                "And inventory days?",
                "Inventory days rose {p1}; together with DSO the cash conversion cycle "
                "lengthened, which explains most of the drop in operating cash flow to {m1}.",
            ),
        ],
        _working_capital,
    ),
    (
        "Covenant headroom {co}",
        [
            (
                "Our facility has a net leverage covenant of 3.5x. Net debt is {m4} and LTM "
                "EBITDA is {m1}. How much headroom do we have?",
                "Net leverage is net debt / LTM EBITDA. EBITDA could fall by about {p2} before "
                "the covenant is breached. Check whether the agreement allows pro-forma "
                "adjustments for acquisitions and cost savings.",
            ),
            (
                "What if we draw another {m3} on the revolver?",
                "Net debt rises one-for-one unless the cash stays on balance sheet; if it is "
                "spent, headroom shrinks to roughly {p3} of EBITDA.",
            ),
        ],
        _covenant,
    ),
    (
        "Budget variance {q} – opex",
        [
            (
                "Opex came in at {m2} against a budget of {m1}. Break down the variance.",
                "The variance is {m3} over budget ({p1}). Personnel accounts for most of it "
                "(hiring ahead of plan), followed by marketing timing. Separate timing "
                "differences from permanent overspend before forecasting the full year.",
            ),
            (
                "Is the overspend permanent?",
                "Marketing is timing (campaign moved from {q} into this quarter). Personnel "
                "is permanent: {n1} more heads than budget, a run-rate of about {m4} a year.",
            ),
        ],
        _variance,
    ),
    (
        "13-week cash flow forecast",
        [
            (
                "Help me structure a 13-week cash flow forecast for {co}.",
                "Start from opening cash, then weekly receipts (by customer cohort, using "
                "actual DSO), payments (payroll, suppliers by terms, rent, tax, debt service) "
                "and closing cash. Flag weeks where cash falls below the {m3} minimum.",
            ),
            (
                "Which week is the low point?",
                "Week 9: quarterly VAT and the interest payment coincide, so cash dips to about "
                "{m1}. Moving a supplier run by one week keeps the buffer above {m3}.",
            ),
        ],
        _cash,
    ),
    (
        "IFRS 16 lease question",
        [
            (
                "How does IFRS 16 change EBITDA for {co}, with annual lease payments of {m1}?",
                "Under IFRS 16 lease payments leave opex: EBITDA rises by roughly {m1}, while "
                "depreciation of the right-of-use asset and interest on the lease liability "
                "appear below EBITDA. Net debt rises by the lease liability, about {m4}.",
            ),
        ],
        _lease,
    ),
]


def _fill(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


def tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


@dataclass
class Turn:
    question: str
    answer: str


@dataclass
class Conversation:
    title: str
    turns: list[Turn] = field(default_factory=list)


def conversation(rng: random.Random, *, turns: int | None = None) -> Conversation:
    """A finance conversation: a topic's turns in order, then follow-ups until ``turns``."""
    title_t, script, figures = rng.choice(_TOPICS)
    values = _values(rng, figures)
    wanted = turns if turns is not None else rng.randint(1, len(script) + 3)
    result = Conversation(_fill(title_t, values))
    for i in range(wanted):
        if i < len(script):
            q, a = script[i]
        else:
            _, other, figures = rng.choice(_TOPICS)
            q, a = rng.choice(other)
            values = _values(rng, figures) | {"co": values["co"], "q": values["q"]}
        result.turns.append(Turn(_fill(q, values), _fill(a, values)))
    return result
