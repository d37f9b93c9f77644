"""The tools the model may call: their specs, the checks on its arguments, the cards, and how
a saved reply is cut around its cards."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from core import chat_display, tools

NOBODY = uuid.uuid4()


def run(name: str, **arguments: object) -> tools.ToolCard:
    return tools.run(tools.Call(name, arguments), db=None, user_id=NOBODY, tables=[])  # type: ignore[arg-type]


def test_the_specs_offer_run_sql_only_with_tables() -> None:
    without = [s["function"]["name"] for s in tools.specs(sql_tables=[])]
    with_tables = [s["function"]["name"] for s in tools.specs(sql_tables=["revenue"])]
    assert "run_sql" not in without and with_tables[0] == "run_sql"
    assert set(without) == set(tools.FINANCE)
    cagr = next(s for s in without if s == "cagr")
    spec = next(s for s in tools.specs(sql_tables=[]) if s["function"]["name"] == cagr)
    assert spec["function"]["parameters"]["required"] == ["start", "end", "years"]
    loan = next(s for s in tools.specs(sql_tables=[]) if s["function"]["name"] == "loan_payment")
    assert "periods_per_year" not in loan["function"]["parameters"]["required"]


def test_a_finance_call_computes_in_code_and_shows_its_inputs() -> None:
    card = run("cagr", start=120, end=210, years=5)
    assert card.ok and card.value == pytest.approx(0.118427, abs=1e-6)
    assert card.title == "cagr(start=120.0, end=210.0, years=5.0)"
    assert card.detail == "(end / start)^(1 / years) − 1"
    assert '"result": 0.118' in card.for_model()


def test_numbers_written_as_text_are_read_but_not_guessed() -> None:
    assert run("cagr", start="$120", end="210", years="5").ok
    assert run("npv", rate="0.1", cash_flows="-1000, 300, 400, 500").value == pytest.approx(
        -21.0368, abs=1e-4
    )
    bad = run("cagr", start="a lot", end=210, years=5)
    assert not bad.ok and bad.error == "cagr: start must be a number, not 'a lot'."


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [
        ("cagr", {"start": 1, "end": 2}, "cagr: missing arguments: years."),
        ("cagr", {"start": 1, "end": 2, "years": 1, "bonus": 3}, "cagr: unknown arguments: bonus."),
        ("cagr", {"start": 0, "end": 2, "years": 1}, "positive start"),
        ("loan_payment", {"principal": 1, "annual_rate": 0.1, "years": 1, "periods_per_year": 1.5}, "whole number"),
        ("irr", {"cash_flows": "x"}, "cash_flows[0] must be a number"),
        ("delete_everything", {}, "There is no tool named 'delete_everything'"),
        ("run_sql", {"query": "SELECT 1"}, "There is no tool named 'run_sql'"),  # no tables
    ],
)  # fmt: skip
def test_bad_calls_become_error_cards_the_model_can_correct(
    name: str, arguments: dict[str, object], error: str
) -> None:
    card = run(name, **arguments)
    assert not card.ok and error in (card.error or "")
    assert card.for_model().startswith("Error: ")


def test_arguments_as_a_json_string_are_read() -> None:
    card = tools.run(
        tools.Call("margin", '{"part": 45, "revenue": 180}'),  # type: ignore[arg-type]
        db=None,  # type: ignore[arg-type]
        user_id=NOBODY,
        tables=[],
    )
    assert card.ok and card.value == pytest.approx(0.25)


def test_charts_follow_the_result_shape() -> None:
    by_year = pd.DataFrame({"year": [2023, 2024], "revenue": [1.0, 2.0]})
    by_segment = pd.DataFrame({"segment": ["A", "B"], "revenue": [1.0, 2.0]})
    one_row = by_year.head(1)
    no_numbers = pd.DataFrame({"a": ["x", "y"], "b": ["p", "q"]})
    assert tools.chart_spec(by_year) == {"kind": "line", "x": "year", "y": ["revenue"]}
    assert tools.chart_spec(by_segment) == {"kind": "bar", "x": "segment", "y": ["revenue"]}
    assert tools.chart_spec(one_row) is None and tools.chart_spec(no_numbers) is None


def test_a_card_round_trips_through_the_saved_reply() -> None:
    card = run("pct_change", old=80, new=100)
    again = tools.ToolCard.from_record({**card.record(), "added_later": 1})
    assert again == card


def test_a_result_table_in_markdown_keeps_formulas_inert_and_escapes_cells() -> None:
    card = tools.ToolCard(
        "run_sql", {"query": "SELECT 1"}, True, "SQL over t", detail="SELECT 1",
        columns=["name", "n"], rows=[["=HYPERLINK(\"x\")", 1], ["a|b", 2]], total_rows=2,
    )  # fmt: skip
    text = card.markdown()
    assert "'=HYPERLINK" in text  # made inert (the quote), and no backslash noise
    assert "a\\|b" in text and "```sql\nSELECT 1\n```" in text


def test_a_saved_reply_is_cut_where_its_cards_stood() -> None:
    first, second = run("margin", part=1, revenue=2), run("ratio", numerator=1, denominator=2)
    first.at, second.at = 9, 99  # the second past the end: shown last
    parts = chat_display.segments("Checking. Done.", [second, first])
    assert parts == ["Checking.", first, " Done.", second]
    assert chat_display.segments("Plain.", []) == ["Plain."]
