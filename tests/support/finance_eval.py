"""A small finance evaluation for choosing the default model (benchmarks/model_eval.py).

Questions with answers a program can check: definitions (the words a correct definition
must contain), arithmetic (one figure, computed here with ``core.finance`` so the key is
exact), reading a short table (one figure), and judgements (one of two words). Written for
this project; the figures are invented.

A reply passes when its check passes:
- ``figure``: some number in the reply is within 1 % of the answer (or 0.05 absolute for
  answers under 5), written any usual way (``14.9%``, ``$1,234.5``, ``1.2 million`` is not
  parsed as 1,200,000: answers are asked in the units they are checked in).
- ``words``: every group has one of its words (case-insensitive, whole words).
- ``choice``: the right word appears and the wrong one does not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from core import finance

_NUMBER = re.compile(r"(?<![\w.])[-−]?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class Question:
    id: str
    kind: str  # "definition", "arithmetic", "table", "judgement"
    prompt: str
    figure: float | None = None
    words: tuple[tuple[str, ...], ...] = ()
    right: str = ""
    wrong: str = ""

    def passes(self, reply: str) -> bool:
        if self.figure is not None:
            return any(_close(n, self.figure) for n in numbers(reply))
        if self.words:
            low = reply.lower()
            return all(any(re.search(rf"\b{re.escape(w)}\b", low) for w in g) for g in self.words)
        low = reply.lower()
        return bool(re.search(rf"\b{self.right}\b", low)) and not re.search(
            rf"\b{self.wrong}\b", low
        )


def numbers(text: str) -> list[float]:
    """Every number written in ``text`` (thousands separators and a Unicode minus allowed)."""
    found = []
    for match in _NUMBER.finditer(text):
        raw = match.group().replace(",", "").replace("−", "-")
        try:
            found.append(float(raw))
        except ValueError:
            continue
    return found


def _close(value: float, answer: float) -> bool:
    if abs(answer) < 5:
        return abs(value - answer) <= 0.05
    return abs(value - answer) <= 0.01 * abs(answer)


def _pct(x: float) -> float:
    return round(100 * x, 2)


def _define(qid: str, term: str, *groups: Sequence[str]) -> Question:
    return Question(
        qid,
        "definition",
        f"In one or two sentences: what is {term}?",
        words=tuple(tuple(g) for g in groups),
    )


def _calc(qid: str, prompt: str, answer: float, kind: str = "arithmetic") -> Question:
    return Question(qid, kind, prompt + " Answer with the number.", figure=round(answer, 4))


def _judge(qid: str, prompt: str, right: str, wrong: str) -> Question:
    return Question(
        qid, "judgement", f"{prompt} Answer with one word: {right} or {wrong}.", right=right,
        wrong=wrong,
    )  # fmt: skip


TABLE = """\
| year | revenue ($M) | cost of sales ($M) | operating income ($M) | net income ($M) |
|---|---|---|---|---|
| 2021 | 480 | 300 | 72 | 50 |
| 2022 | 540 | 330 | 86 | 61 |
| 2023 | 600 | 354 | 105 | 74 |
| 2024 | 690 | 400 | 124 | 88 |"""

BALANCE = """\
| item | $M |
|---|---|
| cash | 40 |
| receivables | 70 |
| inventory | 90 |
| current liabilities | 160 |
| total debt | 300 |
| shareholders' equity | 500 |"""


def _table(qid: str, question: str, answer: float, table: str = TABLE) -> Question:
    return _calc(qid, f"{table}\n\nFrom the table above: {question}", answer, kind="table")


QUESTIONS: list[Question] = [
    # --- definitions ---------------------------------------------------------------------
    _define(
        "ebitda",
        "EBITDA",
        ["earnings"],
        ["interest"],
        ["tax", "taxes"],
        ["depreciation"],
        ["amortization", "amortisation"],
    ),
    _define("gross-margin", "gross margin", ["revenue", "sales"], ["cost"]),
    _define("current-ratio", "the current ratio", ["current assets"], ["current liabilities"]),
    _define("quick-ratio", "the quick ratio", ["inventory", "inventories"], ["liabilities"]),
    _define("working-capital", "working capital", ["current assets"], ["current liabilities"]),
    _define("free-cash-flow", "free cash flow", ["cash"], ["capital expenditure", "capex"]),
    _define("npv", "net present value (NPV)", ["present value"], ["cash flows", "cash flow"]),
    _define("irr", "the internal rate of return (IRR)", ["discount rate", "rate"], ["zero"]),
    _define("wacc", "WACC", ["cost"], ["debt"], ["equity"]),
    _define("eps", "earnings per share (EPS)", ["net income", "earnings", "profit"], ["shares"]),
    _define("pe", "a price-to-earnings (P/E) ratio", ["price"], ["earnings"]),
    _define("roe", "return on equity (ROE)", ["net income", "profit"], ["equity"]),
    _define("dividend-yield", "dividend yield", ["dividend", "dividends"], ["price"]),
    _define("accrual", "accrual accounting", ["revenue", "revenues"], ["expenses", "expense"]),
    _define("liquidity", "liquidity", ["cash"], ["quickly", "easily", "short-term"]),
    # --- arithmetic ------------------------------------------------------------------------
    _calc(
        "cagr-120-210",
        "Revenue grew from $120M in 2019 to $210M in 2024. What is the compound annual growth "
        "rate, in percent?",
        _pct(finance.cagr(120, 210, 5)),
    ),
    _calc(
        "cagr-50-80",
        "An investment grew from $50,000 to $80,000 over 4 years. What is its CAGR, in percent?",
        _pct(finance.cagr(50, 80, 4)),
    ),
    _calc(
        "pct-change",
        "A stock fell from $84 to $63. By what percent did it fall?",
        -_pct(finance.pct_change(84, 63)),
    ),
    _calc(
        "pct-up",
        "Sales rose from $2.4M to $3.0M. What is the percentage increase?",
        _pct(finance.pct_change(2.4, 3.0)),
    ),
    _calc(
        "gross-margin-calc",
        "Revenue is $800K and cost of goods sold is $520K. What is the gross margin, in percent?",
        _pct(finance.margin(800 - 520, 800)),
    ),
    _calc(
        "net-margin",
        "Net income is $45M on revenue of $600M. What is the net profit margin, in percent?",
        _pct(finance.margin(45, 600)),
    ),
    _calc(
        "current-ratio-calc",
        "Current assets are $360K and current liabilities are $240K. What is the current ratio?",
        finance.ratio(360, 240),
    ),
    _calc(
        "debt-equity",
        "Total debt is $420M and shareholders' equity is $280M. What is the debt-to-equity ratio?",
        finance.ratio(420, 280),
    ),
    _calc(
        "pe-calc",
        "A share trades at $72 and earnings per share are $4.50. What is the P/E ratio?",
        finance.ratio(72, 4.5),
    ),
    _calc(
        "eps-calc",
        "Net income is $36M and there are 12M shares outstanding. What is EPS, in dollars?",
        finance.ratio(36, 12) + 0.0,
    ),
    _calc(
        "simple-interest",
        "What is the simple interest on $10,000 at 6% a year for 3 years, in dollars?",
        10_000 * 0.06 * 3,
    ),
    _calc(
        "compound",
        "$1,000 is invested at 5% a year compounded annually. What is it worth after 10 years, "
        "in dollars?",
        1000 * 1.05**10,
    ),
    _calc(
        "npv-calc",
        "A project costs $1,000 today and returns $400 at the end of each of the next 3 years. "
        "At a 10% discount rate, what is its NPV in dollars?",
        finance.npv(0.10, [-1000, 400, 400, 400]),
    ),
    _calc(
        "payback",
        "A $900 investment returns $300 a year. What is its payback period in years?",
        finance.payback_period([-900, 300, 300, 300, 300]),
    ),
    _calc(
        "loan",
        "What is the monthly payment on a $200,000 loan at 6% annual interest over 30 years "
        "(360 monthly payments), in dollars?",
        finance.loan_payment(200_000, 0.06, 30),
    ),
    _calc(
        "dividend-yield-calc",
        "A stock pays an annual dividend of $2.40 and trades at $60. What is the dividend yield, "
        "in percent?",
        _pct(finance.ratio(2.4, 60)),
    ),
    _calc(
        "ebitda-calc",
        "Operating income is $150M, depreciation $30M and amortisation $20M. What is EBITDA in $M?",
        150 + 30 + 20,
    ),
    _calc(
        "roe-calc",
        "Net income is $18M and average shareholders' equity is $120M. What is ROE, in percent?",
        _pct(finance.ratio(18, 120)),
    ),
    # --- reading a table -------------------------------------------------------------------
    _table("t-revenue-2023", "what was revenue in 2023, in $M?", 600),
    _table(
        "t-growth-2024",
        "by what percent did revenue grow from 2023 to 2024?",
        _pct(finance.pct_change(600, 690)),
    ),
    _table(
        "t-gross-margin-2022",
        "what was the gross margin in 2022, in percent?",
        _pct(finance.margin(540 - 330, 540)),
    ),
    _table(
        "t-op-margin-2024",
        "what was the operating margin in 2024, in percent?",
        _pct(finance.margin(124, 690)),
    ),
    _table(
        "t-cagr",
        "what was the revenue CAGR from 2021 to 2024, in percent?",
        _pct(finance.cagr(480, 690, 3)),
    ),
    _table(
        "t-net-total", "what was total net income over the four years, in $M?", 50 + 61 + 74 + 88
    ),
    _table("t-current", "what is the current ratio?", finance.ratio(40 + 70 + 90, 160), BALANCE),
    _table(
        "t-quick",
        "what is the quick ratio (cash plus receivables over current liabilities)?",
        finance.ratio(40 + 70, 160),
        BALANCE,
    ),
    _table("t-de", "what is the debt-to-equity ratio?", finance.ratio(300, 500), BALANCE),
    # --- judgement -------------------------------------------------------------------------
    _judge(
        "j-current-low",
        "A company's current ratio is 0.8. Is its short-term liquidity strong or weak?",
        "weak",
        "strong",
    ),
    _judge(
        "j-margin-trend",
        "Gross margin went from 42% to 35% over two years. Did profitability improve or "
        "deteriorate?",
        "deteriorate",
        "improve",
    ),
    _judge(
        "j-npv-negative",
        "A project's NPV at the cost of capital is -$2M. Should it be accepted or rejected?",
        "rejected",
        "accepted",
    ),
    _judge(
        "j-leverage",
        "Company A has debt-to-equity 0.3 and company B 2.5. Is company B more or less "
        "leveraged than A?",
        "more",
        "less",
    ),
]
