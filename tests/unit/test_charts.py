"""The usage charts' layout: the chosen range on the x axis, legends that do not cut names."""

from __future__ import annotations

from datetime import date

import pandas as pd

from core import charts

FRAME = pd.DataFrame(
    {
        "day": pd.to_datetime(["2026-03-03", "2026-03-05"]),
        "model": ["SmolLM2-135M-Instruct.Q4_1", "llama3.2:3b"],
        "requests": [2, 3],
        "prompt_tokens": [10, 20],
        "completion_tokens": [5, 6],
        "tokens": [15, 26],
    }
)


def test_per_day_charts_span_the_chosen_range_not_only_days_with_data() -> None:
    spec = charts.tokens_per_day(FRAME, start=date(2026, 3, 1), end=date(2026, 3, 31)).to_dict()
    first, last = spec["encoding"]["x"]["scale"]["domain"]
    assert first.startswith("2026-02-28T12") and last.startswith("2026-03-31T12")
    outcomes = FRAME.assign(outcome="ok")
    spec = charts.requests_per_day(outcomes, start=date(2026, 3, 1), end=date(2026, 3, 7))
    assert spec.to_dict()["encoding"]["x"]["scale"]["domain"][1].startswith("2026-03-07T12")


def test_model_names_are_not_cut_and_legends_sit_under_the_chart() -> None:
    legend = charts.tokens_per_day(FRAME).to_dict()["encoding"]["color"]["legend"]
    assert legend["orient"] == "bottom" and legend["labelLimit"] == 0
    long = pd.DataFrame(
        {"model": ["SmolLM2-135M-Instruct.Q4_1"], "measure": ["Tokens per second"],
         "stat": ["median"], "value": [70.0]}
    )  # fmt: skip
    axis = charts.latency(long, "Tokens per second").to_dict()["encoding"]["x"]["axis"]
    assert axis["labelLimit"] == 0


def test_top_sessions_with_equal_titles_stay_apart_and_labels_are_whole() -> None:
    title = "Build a revenue bridge for Contoso from Q3 last year ($412M) to Q3 this year"
    frame = pd.DataFrame(
        {
            "session_id": ["a1b2c3d4-0000", "e5f6a7b8-0000"],
            "title": [title, title],
            "username": ["ann", "ann"],
            "tokens": [900, 800],
            "requests": [3, 3],
        }
    )
    spec = charts.top_sessions(frame).to_dict()
    labels = [row["session"] for row in spec["datasets"][next(iter(spec["datasets"]))]]
    assert labels == [f"{title[:31]}… · a1b2c3", f"{title[:31]}… · e5f6a7"]
    assert spec["encoding"]["y"]["axis"]["labelLimit"] == 0
