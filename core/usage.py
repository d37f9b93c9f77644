"""Queries over the usage ledger (``llm_calls``, written by ``core.usage_log``).

Every query aggregates in PostgreSQL (``date_trunc``, ``percentile_cont``, ``FILTER``) and
returns a small pandas DataFrame; the usage page, the notebooks and the benchmarks call the
same functions. Scope is explicit: ``user_id`` is one user's id, or ``None`` for all users
(callers decide who may ask for what, see ``core.access``).

Dates are whole days in UTC: a range ``start..end`` covers ``start 00:00`` up to, not
including, ``end + 1 day 00:00``. An empty range gives empty frames with the same columns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from core import usage_percentiles, usage_query
from core.models import NO_SESSION
from core.usage_query import (
    LATENCY_COLUMNS,
    TPS,
    DateRange,
    date_range,
    frame,
    raw_where,
    rollup_where,
    typed,
)
from core.usage_query import last_days as last_days  # the usage page's default range

KPI_COLUMNS = [
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "errors",
    "cancelled",
    "error_rate",
    "median_ttft_ms",
    "percentiles_exact",
]
TOKENS_PER_DAY_COLUMNS = [
    "day",
    "model",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "tokens",
]
REQUESTS_PER_DAY_COLUMNS = ["day", "outcome", "requests"]
TOP_SESSION_COLUMNS = [
    "session_id",
    "title",
    "username",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "tokens",
]
CALL_COLUMNS = [
    "created_at",
    "username",
    "session_id",
    "model",
    "backend",
    "outcome",
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms",
    "duration_ms",
    "tokens_per_s",
    "tool_calls",
    "error",
]


def _totals(db: Session, user_id: uuid.UUID | None, rng: DateRange) -> tuple[Any, ...]:
    sql = f"""
        SELECT coalesce(sum(d.requests), 0), coalesce(sum(d.prompt_tokens), 0),
               coalesce(sum(d.completion_tokens), 0),
               coalesce(sum(d.prompt_tokens + d.completion_tokens), 0),
               coalesce(sum(d.requests) FILTER (WHERE d.outcome = 'error'), 0),
               coalesce(sum(d.requests) FILTER (WHERE d.outcome = 'cancelled'), 0)
        FROM usage_daily d
        WHERE {rollup_where(user_id)}
    """  # noqa: S608 (fixed SQL fragments only; values are bound)
    row = db.execute(text(sql), rng.params(user_id)).one()
    return tuple(int(v) for v in row)


def _latency(
    db: Session, user_id: uuid.UUID | None, rng: DateRange, requests: int, exact_limit: int | None
) -> tuple[pd.DataFrame, pd.Series | None]:
    """(per-model percentiles, the overall row or None)."""
    found = usage_percentiles.percentiles(db, user_id, rng, requests, exact_limit)
    return usage_percentiles.split(found)


def _kpi_frame(totals: tuple[Any, ...], overall: pd.Series | None) -> pd.DataFrame:
    requests, prompt, completion, total, errors, cancelled = totals
    if requests == 0:
        return typed(pd.DataFrame(columns=KPI_COLUMNS))
    median = overall["ttft_p50_ms"] if overall is not None else None
    exact = bool(overall["percentiles_exact"]) if overall is not None else True
    row = (requests, prompt, completion, total, errors, cancelled, errors / requests, median, exact)
    return typed(pd.DataFrame.from_records([row], columns=KPI_COLUMNS))


def kpis(
    db: Session,
    *,
    user_id: uuid.UUID | None,
    start: date,
    end: date,
    exact_limit: int | None = None,
) -> pd.DataFrame:
    """One row of headline figures; no row when the range holds no request.

    ``error_rate`` is errors / requests (cancelled replies are not errors); the median time to
    first token covers every request that got a first token.
    """
    rng = date_range(start, end)
    totals = _totals(db, user_id, rng)
    if totals[0] == 0:
        return _kpi_frame(totals, None)
    _, overall = _latency(db, user_id, rng, totals[0], exact_limit)
    return _kpi_frame(totals, overall)


def tokens_per_day(
    db: Session, *, user_id: uuid.UUID | None, start: date, end: date
) -> pd.DataFrame:
    """Tokens per UTC day and model (one row per day and model that had requests)."""
    sql = f"""
        SELECT date_trunc('day', d.day::timestamp) AS day, d.model, sum(d.requests),
               sum(d.prompt_tokens), sum(d.completion_tokens),
               sum(d.prompt_tokens + d.completion_tokens)
        FROM usage_daily d
        WHERE {rollup_where(user_id)}
        GROUP BY 1, 2
        ORDER BY 1, 2
    """  # noqa: S608 (fixed SQL fragments only; values are bound)
    rng = date_range(start, end)
    return frame(db, sql, rng.params(user_id), TOKENS_PER_DAY_COLUMNS)


def requests_per_day(
    db: Session, *, user_id: uuid.UUID | None, start: date, end: date
) -> pd.DataFrame:
    """Requests per UTC day and outcome (ok, error, cancelled)."""
    sql = f"""
        SELECT date_trunc('day', d.day::timestamp) AS day, d.outcome, sum(d.requests)
        FROM usage_daily d
        WHERE {rollup_where(user_id)}
        GROUP BY 1, 2
        ORDER BY 1, 2
    """  # noqa: S608 (fixed SQL fragments only; values are bound)
    rng = date_range(start, end)
    return frame(db, sql, rng.params(user_id), REQUESTS_PER_DAY_COLUMNS)


def latency_by_model(
    db: Session,
    *,
    user_id: uuid.UUID | None,
    start: date,
    end: date,
    exact_limit: int | None = None,
) -> pd.DataFrame:
    """Time to first token (ms) and generation speed (tokens/s) per model: median and p95."""
    rng = date_range(start, end)
    requests = _totals(db, user_id, rng)[0]
    if requests == 0:
        return typed(pd.DataFrame(columns=LATENCY_COLUMNS))
    per_model, _ = _latency(db, user_id, rng, requests, exact_limit)
    return per_model


def top_sessions(
    db: Session, *, user_id: uuid.UUID | None, start: date, end: date, limit: int = 10
) -> pd.DataFrame:
    """The sessions that used the most tokens in the range.

    A deleted session's usage stays in the totals but not here: deleting it sets the calls'
    session to none, and the rollup follows (trigger on UPDATE).
    """
    sql = f"""
        SELECT t.session_id, s.title, u.username, t.requests, t.prompt_tokens,
               t.completion_tokens, t.tokens
        FROM (
            SELECT d.session_id, sum(d.requests) AS requests,
                   sum(d.prompt_tokens) AS prompt_tokens,
                   sum(d.completion_tokens) AS completion_tokens,
                   sum(d.prompt_tokens + d.completion_tokens) AS tokens
            FROM usage_daily d
            WHERE {rollup_where(user_id)} AND d.session_id <> :no_session
            GROUP BY d.session_id
            ORDER BY tokens DESC, d.session_id
            LIMIT :limit
        ) t
        JOIN conversation_sessions s ON s.id = t.session_id
        JOIN users u ON u.id = s.user_id
        ORDER BY t.tokens DESC, t.session_id
    """  # noqa: S608 (fixed SQL fragments only; values are bound)
    rng = date_range(start, end)
    params = rng.params(user_id, limit=max(1, min(int(limit), 1000)), no_session=NO_SESSION)
    frame = usage_query.frame(db, sql, params, TOP_SESSION_COLUMNS)
    frame["session_id"] = frame["session_id"].map(str)
    return frame


def calls(
    db: Session, *, user_id: uuid.UUID | None, start: date, end: date, limit: int = 100_000
) -> pd.DataFrame:
    """The raw usage rows of a range, newest first (for notebooks), at most ``limit`` rows."""
    sql = f"""
        SELECT c.created_at, u.username, c.session_id, c.model, c.backend, c.outcome,
               c.prompt_tokens, c.completion_tokens, c.ttft_ms, c.duration_ms, {TPS},
               c.tool_calls, c.error
        FROM llm_calls c JOIN users u ON u.id = c.user_id
        WHERE {raw_where(user_id)}
        ORDER BY c.created_at DESC, c.id DESC
        LIMIT :limit
    """  # noqa: S608 (fixed SQL fragments only; values are bound)
    rng = date_range(start, end)
    params = rng.params(user_id, limit=max(1, min(int(limit), 5_000_000)))
    frame = usage_query.frame(db, sql, params, CALL_COLUMNS)
    frame["session_id"] = frame["session_id"].map(lambda v: str(v) if v is not None else None)
    return frame


@dataclass(frozen=True)
class Dashboard:
    """Everything the usage page shows for one scope and range."""

    range: DateRange
    kpis: pd.DataFrame
    tokens_per_day: pd.DataFrame
    requests_per_day: pd.DataFrame
    latency_by_model: pd.DataFrame
    top_sessions: pd.DataFrame

    @property
    def empty(self) -> bool:
        return self.kpis.empty


def dashboard(
    db: Session,
    *,
    user_id: uuid.UUID | None,
    start: date,
    end: date,
    top: int = 10,
    exact_limit: int | None = None,
) -> Dashboard:
    """All of the usage page's queries for one range (the benchmark times exactly this)."""
    rng = date_range(start, end)
    totals = _totals(db, user_id, rng)
    if totals[0] == 0:
        per_model, overall = typed(pd.DataFrame(columns=LATENCY_COLUMNS)), None
    else:
        per_model, overall = _latency(db, user_id, rng, totals[0], exact_limit)
    return Dashboard(
        range=rng,
        kpis=_kpi_frame(totals, overall),
        tokens_per_day=tokens_per_day(db, user_id=user_id, start=rng.start, end=rng.end),
        requests_per_day=requests_per_day(db, user_id=user_id, start=rng.start, end=rng.end),
        latency_by_model=per_model,
        top_sessions=top_sessions(db, user_id=user_id, start=rng.start, end=rng.end, limit=top),
    )


def headline(kpis: pd.DataFrame) -> pd.Series:
    """The dashboard's headline figures as a reader wants them (a notebook's table): counts
    with thousands separators, the error rate as a percentage, times in milliseconds."""
    if kpis.empty:
        return pd.Series(dtype="object")
    k = kpis.iloc[0]
    ttft = k["median_ttft_ms"]
    return pd.Series(
        {
            "requests": f"{int(k['requests']):,}",
            "prompt tokens": f"{int(k['prompt_tokens']):,}",
            "completion tokens": f"{int(k['completion_tokens']):,}",
            "total tokens": f"{int(k['total_tokens']):,}",
            "errors": f"{int(k['errors']):,}",
            "stopped (cancelled)": f"{int(k['cancelled']):,}",
            "error rate": f"{float(k['error_rate']):.1%}",
            "median time to first token": "—" if pd.isna(ttft) else f"{float(ttft):,.0f} ms",
        },
        name="usage",
    )
