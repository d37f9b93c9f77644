"""Altair charts of the usage frames, shared by the usage page and the notebooks.

Each function takes a frame from ``core.usage`` and returns a chart; nothing is computed here
beyond reshaping for plotting (the figures come from SQL).
"""

from __future__ import annotations

from datetime import date

import altair as alt
import pandas as pd

OUTCOME_COLOURS = {
    "ok": "#2e7d32",
    "truncated": "#ef6c00",
    "cancelled": "#9e9e9e",
    "error": "#c62828",
}


def latency_long(latency: pd.DataFrame) -> pd.DataFrame:
    """One row per model, measure and statistic: what the grouped bar charts plot."""
    columns = {
        "ttft_p50_ms": ("Time to first token (ms)", "median"),
        "ttft_p95_ms": ("Time to first token (ms)", "p95"),
        "tokens_per_s_p50": ("Tokens per second", "median"),
        "tokens_per_s_p95": ("Tokens per second", "p95"),
    }
    rows = [
        {"model": row["model"], "measure": measure, "stat": stat, "value": row[column]}
        for _, row in latency.iterrows()
        for column, (measure, stat) in columns.items()
        if pd.notna(row[column])
    ]
    return pd.DataFrame(rows, columns=["model", "measure", "stat", "value"])


# Legends under the chart, names in full: beside it they took a third of a half-width chart
# and cut model names ("SmolLM2-135M-Instr…").
LEGEND = alt.Legend(orient="bottom", direction="vertical", labelLimit=0, titleLimit=0)


def days_axis(start: date | None, end: date | None) -> alt.X:
    """The x axis of a per-day chart: the whole chosen range, not only the days with data."""
    if start is None or end is None:
        return alt.X("day:T", title="Day (UTC)")
    first = pd.Timestamp(start) - pd.Timedelta(hours=12)
    last = pd.Timestamp(end) + pd.Timedelta(hours=12)
    domain = [first.isoformat(), last.isoformat()]
    return alt.X("day:T", title="Day (UTC)", scale=alt.Scale(domain=domain))


def tokens_per_day(
    frame: pd.DataFrame, *, start: date | None = None, end: date | None = None
) -> alt.Chart:
    chart: alt.Chart = (
        alt.Chart(frame, title="Tokens per day by model")
        .mark_bar()
        .encode(
            x=days_axis(start, end),
            y=alt.Y("sum(tokens):Q", title="Tokens"),
            color=alt.Color("model:N", title="Model", legend=LEGEND),
            tooltip=[
                alt.Tooltip("day:T", title="Day"),
                "model:N",
                alt.Tooltip("tokens:Q", format=","),
                alt.Tooltip("prompt_tokens:Q", format=","),
                alt.Tooltip("completion_tokens:Q", format=","),
                "requests:Q",
            ],
        )
    )
    return chart


def requests_per_day(
    frame: pd.DataFrame, *, start: date | None = None, end: date | None = None
) -> alt.Chart:
    outcomes = list(OUTCOME_COLOURS)
    chart: alt.Chart = (
        alt.Chart(frame, title="Requests per day by outcome")
        .mark_bar()
        .encode(
            x=days_axis(start, end),
            y=alt.Y("sum(requests):Q", title="Requests"),
            color=alt.Color(
                "outcome:N",
                title="Outcome",
                scale=alt.Scale(domain=outcomes, range=[OUTCOME_COLOURS[o] for o in outcomes]),
                legend=alt.Legend(orient="bottom", labelLimit=0),
            ),
            tooltip=[alt.Tooltip("day:T", title="Day"), "outcome:N", "requests:Q"],
        )
    )
    return chart


def latency(long: pd.DataFrame, measure: str) -> alt.Chart:
    """Median and p95 side by side per model, for one measure of ``latency_long``."""
    data = long[long["measure"] == measure]
    chart: alt.Chart = (
        alt.Chart(data, title=f"{measure} per model")
        .mark_bar()
        .encode(
            x=alt.X("model:N", title=None, axis=alt.Axis(labelAngle=-20, labelLimit=0)),
            xOffset=alt.XOffset("stat:N", sort=["median", "p95"]),
            y=alt.Y("value:Q", title=measure),
            color=alt.Color(
                "stat:N",
                title="Statistic",
                sort=["median", "p95"],
                legend=alt.Legend(orient="bottom", labelLimit=0),
            ),
            tooltip=["model:N", "stat:N", alt.Tooltip("value:Q", format=",.1f")],
        )
    )
    return chart


TITLE_CHARS = 32  # of a session's title in the top sessions chart's labels


def top_sessions(frame: pd.DataFrame) -> alt.Chart:
    # Titles repeat ("New chat", several "Build a revenue bridge..."): each bar's label is
    # the title's start and its session id's start, whole, so equal titles stay apart.
    short = frame["title"].where(
        frame["title"].str.len() <= TITLE_CHARS, frame["title"].str[: TITLE_CHARS - 1] + "…"
    )
    labelled = frame.assign(session=short + " · " + frame["session_id"].str[:6])
    chart: alt.Chart = (
        alt.Chart(labelled, title="Top sessions by tokens")
        .mark_bar()
        .encode(
            y=alt.Y("session:N", sort="-x", title=None, axis=alt.Axis(labelLimit=0)),
            x=alt.X("tokens:Q", title="Tokens"),
            tooltip=["title:N", "username:N", alt.Tooltip("tokens:Q", format=","), "requests:Q"],
        )
    )
    return chart


def result_chart(frame: pd.DataFrame, spec: dict[str, object]) -> alt.Chart:
    """A query result drawn as ``core.tools.chart_spec`` says: a line over a time axis, bars
    over categories, one series per numeric column."""
    x, series = str(spec["x"]), [str(c) for c in spec["y"]]  # type: ignore[attr-defined]
    long = frame.melt(id_vars=[x], value_vars=series, var_name="series", value_name="value")
    kind = "O" if spec.get("kind") == "line" else "N"
    base = alt.Chart(long)
    marks = base.mark_line(point=True) if spec.get("kind") == "line" else base.mark_bar()
    chart: alt.Chart = marks.encode(
        x=alt.X(f"{x}:{kind}", title=x, sort=None),
        y=alt.Y("value:Q", title=series[0] if len(series) == 1 else "value"),
        color=alt.Color("series:N", title=None),
        xOffset=alt.XOffset("series:N")
        if spec.get("kind") != "line" and len(series) > 1
        else alt.Undefined,
        tooltip=[f"{x}:{kind}", "series:N", alt.Tooltip("value:Q", format=",.4g")],
    )
    return chart
