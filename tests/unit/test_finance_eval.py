"""The model evaluation's questions and checks (tests/support/finance_eval.py): enough of
them, each answer key not given away by its own question, and checks that tell the wrong
answers the embedded model gave from right ones."""

from __future__ import annotations

from tests.support.finance_eval import QUESTIONS, Question, numbers

LOOKUPS = {"t-revenue-2023"}  # reading a cell: the answer is in the table by design


def by_id(qid: str) -> Question:
    return next(q for q in QUESTIONS if q.id == qid)


def test_there_are_at_least_forty_questions_of_every_kind() -> None:
    assert len(QUESTIONS) >= 40
    assert len({q.id for q in QUESTIONS}) == len(QUESTIONS)
    assert {q.kind for q in QUESTIONS} == {"definition", "arithmetic", "table", "judgement"}


def test_no_figure_is_given_away_by_its_own_question() -> None:
    for q in QUESTIONS:
        if q.figure is None or q.id in LOOKUPS:
            continue
        stated = [n for n in numbers(q.prompt) if q.passes(f"{n}")]
        assert stated == [], q.id


def test_the_checks_fail_the_answers_the_demo_model_gave_and_pass_right_ones() -> None:
    ebitda = by_id("ebitda")
    assert not ebitda.passes("Earnings Before Interest and Exchanges")
    assert ebitda.passes(
        "EBITDA is earnings before interest, taxes, depreciation and amortization."
    )
    cagr = by_id("cagr-120-210")
    assert not cagr.passes("The CAGR is 0.04% per annum.")
    assert cagr.passes("CAGR = (210/120)^(1/5) - 1 ≈ 11.8%.")
    assert not cagr.passes("(210 / 120) ** (1 / 5)")  # the inputs alone are no answer
    weak = by_id("j-current-low")
    assert not weak.passes("A current ratio of 0.8 is high-performing and strong.")
    assert not weak.passes("It is strong, not weak.")  # both words: no answer
    assert weak.passes("Weak: current liabilities exceed current assets.")


def test_numbers_are_read_as_written() -> None:
    assert numbers("$1,234.50 and −3.5% (2024)") == [1234.5, -3.5, 2024.0]
