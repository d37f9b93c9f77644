"""The building blocks of usage queries: whole-day UTC date ranges, the scope filters, and
typed DataFrames from SQL aggregates (the same columns and dtypes with or without rows).

A range ``start..end`` covers ``start 00:00`` up to, not including, ``end + 1 day 00:00``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.clock import now
from core.errors import InvalidInput

MAX_RANGE_DAYS = 3660
DEFAULT_RANGE_DAYS = 30

# Generation speed of a completed reply: completion tokens over the seconds after the first
# token. Calls without a first token, or whose stream took no measurable time, are left out.
# (The same expression feeds usage_latency_hist, migration 0004.)
TPS = """
    CASE WHEN c.outcome = 'ok' AND c.completion_tokens > 0 AND c.ttft_ms IS NOT NULL
              AND c.duration_ms > c.ttft_ms
         THEN c.completion_tokens * 1000.0 / (c.duration_ms - c.ttft_ms) END
"""


@dataclass(frozen=True)
class DateRange:
    """Whole UTC days, both ends included."""

    start: date
    end: date

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=UTC)

    @property
    def end_before(self) -> datetime:
        """The first instant after the range (exclusive bound)."""
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=UTC)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def params(self, user_id: uuid.UUID | None, **extra: Any) -> dict[str, Any]:
        """The bound values of a usage query over this range for one user (or all: None)."""
        return {
            "start": self.start,
            "end": self.end,
            "start_at": self.start_at,
            "end_before": self.end_before,
            "user_id": user_id,
            **extra,
        }


def date_range(start: date, end: date) -> DateRange:
    """Validate a range from a date picker or a notebook; ``InvalidInput`` says what is wrong."""
    if isinstance(start, datetime):
        start = start.date()
    if isinstance(end, datetime):
        end = end.date()
    if not isinstance(start, date) or not isinstance(end, date):
        raise InvalidInput("date_range", "Choose a start date and an end date.")
    if start > end:
        raise InvalidInput(
            "date_range",
            f"The start date ({start.isoformat()}) is after the end date ({end.isoformat()}); "
            "choose a start on or before the end.",
        )
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise InvalidInput(
            "date_range", f"Choose a range of at most {MAX_RANGE_DAYS:,} days (about ten years)."
        )
    return DateRange(start, end)


def last_days(days: int = DEFAULT_RANGE_DAYS) -> DateRange:
    """The last ``days`` days, today (UTC) included: the usage page's default."""
    today = now().astimezone(UTC).date()
    return DateRange(today - timedelta(days=max(1, days) - 1), today)


LATENCY_COLUMNS = [
    "model",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "tokens_per_s_p50",
    "tokens_per_s_p95",
    "percentiles_exact",
]

DTYPES: dict[str, str] = {
    "requests": "int64",
    "prompt_tokens": "int64",
    "completion_tokens": "int64",
    "total_tokens": "int64",
    "tokens": "int64",
    "errors": "int64",
    "cancelled": "int64",
    "median_ttft_ms": "float64",
    "error_rate": "float64",
    "ttft_p50_ms": "float64",
    "ttft_p95_ms": "float64",
    "tokens_per_s_p50": "float64",
    "tokens_per_s_p95": "float64",
    "ttft_ms": "float64",
    "duration_ms": "float64",
    "tokens_per_s": "float64",
    "tool_calls": "int64",
    "percentiles_exact": "bool",
    "day": "datetime64[ns]",
    "created_at": "datetime64[ns, UTC]",
}


def rollup_where(user_id: uuid.UUID | None) -> str:
    """Two spellings rather than ``(:all OR user_id = :u)``: a prepared statement's generic
    plan could not drop the user test or pick the index."""
    clause = "d.day >= :start AND d.day <= :end"
    return clause if user_id is None else clause + " AND d.user_id = :user_id"


def raw_where(user_id: uuid.UUID | None) -> str:
    clause = "c.created_at >= :start_at AND c.created_at < :end_before"
    return clause if user_id is None else clause + " AND c.user_id = :user_id"


def frame(db: Session, sql: str, params: Mapping[str, Any], columns: list[str]) -> pd.DataFrame:
    """Run one aggregate query; typed columns, also when there are no rows."""
    rows = db.execute(text(sql), dict(params)).all()
    return typed(pd.DataFrame.from_records([tuple(r) for r in rows], columns=columns))


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    for name in frame.columns:
        kind = DTYPES.get(str(name))
        if kind == "datetime64[ns, UTC]":
            frame[name] = pd.to_datetime(frame[name], utc=True)
        elif kind is not None:
            frame[name] = frame[name].astype(np.dtype(kind))
        else:
            frame[name] = frame[name].astype("object")
    return frame
