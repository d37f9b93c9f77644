"""The usage ledger: one ``llm_calls`` row per model request, and the queries over it.

Every query aggregates in PostgreSQL (``date_trunc``, ``percentile_cont``, ``FILTER``) and
returns a small pandas DataFrame; the usage page, the notebooks and the benchmarks call the
same functions. Scope is explicit: ``user_id`` is one user's id, or ``None`` for all users
(callers decide who may ask for what, see ``core.access``).

Dates are whole days in UTC: a range ``start..end`` covers ``start 00:00`` up to, not
including, ``end + 1 day 00:00``. An empty range gives empty frames with the same columns.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.accounts import Identity
from core.clock import now
from core.errors import Forbidden, InvalidInput, NotFound
from core.models import NO_SESSION, OUTCOMES, LlmCall, User

MAX_ERROR_TEXT = 2000
MAX_RANGE_DAYS = 3660
MAX_QUOTA = 10**12
DEFAULT_RANGE_DAYS = 30


def record_call(
    db: Session,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID | None,
    model: str,
    backend: str,
    prompt_tokens: int,
    completion_tokens: int,
    ttft_ms: float | None,
    duration_ms: float,
    outcome: str,
    error: str | None = None,
) -> LlmCall:
    """Add one usage row (flushed, not committed).

    ``session_id`` must be one of the user's sessions (another user's is ``NotFound``, like
    everywhere else); a session deleted meanwhile is recorded as None, so no usage is lost.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    if session_id is not None:
        session_id = _owned_session_or_none(db, user_id=user_id, session_id=session_id)
    row = LlmCall(
        user_id=user_id,
        session_id=session_id,
        model=model,
        backend=backend,
        prompt_tokens=max(0, int(prompt_tokens)),
        completion_tokens=max(0, int(completion_tokens)),
        ttft_ms=ttft_ms,
        duration_ms=max(0.0, float(duration_ms)),
        outcome=outcome,
        error=error[:MAX_ERROR_TEXT] if error else None,
    )
    db.add(row)
    db.flush()
    return row


def _owned_session_or_none(
    db: Session, *, user_id: uuid.UUID, session_id: uuid.UUID
) -> uuid.UUID | None:
    from sqlalchemy import select

    from core.errors import NotFound
    from core.models import ConversationSession

    owner = db.scalar(
        select(ConversationSession.user_id).where(ConversationSession.id == session_id)
    )
    if owner is None:
        return None
    if owner != user_id:
        raise NotFound("Session not found.")
    return session_id


# --- date ranges -----------------------------------------------------------------------------


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


# --- queries -------------------------------------------------------------------------------
#
# Counts and sums read ``usage_daily`` (exact, kept by triggers). Percentiles are exact
# (``percentile_cont`` over the rows) for one user, and for everyone while the range holds at
# most ``EXACT_PERCENTILE_ROWS`` requests; beyond that everyone's percentiles are estimated from
# ``usage_latency_hist`` (1 % wide logarithmic buckets, so within 1 % of the exact value).
# Frames say which: ``percentiles_exact``.

EXACT_PERCENTILE_ROWS = 50_000
HIST_SCALE = 100  # buckets per unit of ln(value): 1 % wide

# Generation speed of a completed reply: completion tokens over the seconds after the first
# token. Calls without a first token, or whose stream took no measurable time, are left out.
# (The same expression feeds usage_latency_hist, migration 0004.)
_TPS = """
    CASE WHEN c.outcome = 'ok' AND c.completion_tokens > 0 AND c.ttft_ms IS NOT NULL
              AND c.duration_ms > c.ttft_ms
         THEN c.completion_tokens * 1000.0 / (c.duration_ms - c.ttft_ms) END
"""

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
LATENCY_COLUMNS = [
    "model",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "tokens_per_s_p50",
    "tokens_per_s_p95",
    "percentiles_exact",
]
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
    "error",
]

_DTYPES: dict[str, str] = {
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
    "percentiles_exact": "bool",
    "day": "datetime64[ns]",
    "created_at": "datetime64[ns, UTC]",
}


def _rollup_where(user_id: uuid.UUID | None) -> str:
    """Two spellings rather than ``(:all OR user_id = :u)``: a prepared statement's generic
    plan could not drop the user test or pick the index."""
    clause = "d.day >= :start AND d.day <= :end"
    return clause if user_id is None else clause + " AND d.user_id = :user_id"


def _raw_where(user_id: uuid.UUID | None) -> str:
    clause = "c.created_at >= :start_at AND c.created_at < :end_before"
    return clause if user_id is None else clause + " AND c.user_id = :user_id"


def _params(user_id: uuid.UUID | None, rng: DateRange, **extra: Any) -> dict[str, Any]:
    return {
        "start": rng.start,
        "end": rng.end,
        "start_at": rng.start_at,
        "end_before": rng.end_before,
        "user_id": user_id,
        **extra,
    }


def _frame(db: Session, sql: str, params: Mapping[str, Any], columns: list[str]) -> pd.DataFrame:
    """Run one aggregate query; typed columns, also when there are no rows."""
    rows = db.execute(text(sql), dict(params)).all()
    return _typed(pd.DataFrame.from_records([tuple(r) for r in rows], columns=columns))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for name in frame.columns:
        kind = _DTYPES.get(str(name))
        if kind == "datetime64[ns, UTC]":
            frame[name] = pd.to_datetime(frame[name], utc=True)
        elif kind is not None:
            frame[name] = frame[name].astype(np.dtype(kind))
        else:
            frame[name] = frame[name].astype("object")
    return frame


def _totals(db: Session, user_id: uuid.UUID | None, rng: DateRange) -> tuple[Any, ...]:
    sql = f"""
        SELECT coalesce(sum(d.requests), 0), coalesce(sum(d.prompt_tokens), 0),
               coalesce(sum(d.completion_tokens), 0),
               coalesce(sum(d.prompt_tokens + d.completion_tokens), 0),
               coalesce(sum(d.requests) FILTER (WHERE d.outcome = 'error'), 0),
               coalesce(sum(d.requests) FILTER (WHERE d.outcome = 'cancelled'), 0)
        FROM usage_daily d
        WHERE {_rollup_where(user_id)}
    """  # noqa: S608 (fixed SQL fragments only; values are bound)
    row = db.execute(text(sql), _params(user_id, rng)).one()
    return tuple(int(v) for v in row)


def _exact_percentiles(db: Session, user_id: uuid.UUID | None, rng: DateRange) -> pd.DataFrame:
    """percentile_cont over the rows: per model, and overall (model NULL)."""
    sql = f"""
        SELECT c.model,
               percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY c.ttft_ms),
               percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY {_TPS})
        FROM llm_calls c
        WHERE {_raw_where(user_id)}
        GROUP BY GROUPING SETS ((c.model), ())
    """  # noqa: S608 (fixed SQL fragments only; values are bound)
    records = []
    for model, ttft, tps in db.execute(text(sql), _params(user_id, rng)).all():
        ttft = ttft or [None, None]
        tps = tps or [None, None]
        records.append((model, ttft[0], ttft[1], tps[0], tps[1], True))
    return _typed(pd.DataFrame.from_records(records, columns=LATENCY_COLUMNS))


def _estimated_percentiles(db: Session, rng: DateRange) -> pd.DataFrame:
    """Everyone's percentiles from the histogram, per model and overall (model NULL).

    Like percentile_cont: the rank ``q * (n - 1)`` falls between two order statistics, and the
    result interpolates linearly between them. Each order statistic is placed inside its
    bucket as if the bucket's calls were spread evenly (in log space), so each is within one
    bucket width (1 %) of the true value, and so is the result.
    """
    sql = f"""
        WITH h AS (
            SELECT grouping(d.model) = 1 AS overall, d.model, d.metric, d.bucket,
                   sum(d.calls) AS n
            FROM usage_latency_hist d
            WHERE d.day >= :start AND d.day <= :end
            GROUP BY GROUPING SETS ((d.model, d.metric, d.bucket), (d.metric, d.bucket))
            HAVING sum(d.calls) > 0
        ), c AS (
            SELECT overall, model, metric, bucket, n,
                   sum(n) OVER (PARTITION BY overall, model, metric ORDER BY bucket) - n AS below,
                   sum(n) OVER (PARTITION BY overall, model, metric) AS total
            FROM h
        ), ranks AS (
            SELECT g.overall, g.model, g.metric, q, q * (g.total - 1) AS r
            FROM (SELECT DISTINCT overall, model, metric, total FROM c) g
            CROSS JOIN unnest(ARRAY[0.5, 0.95]) AS q
        ), points AS (
            SELECT ranks.overall, ranks.model, ranks.metric, ranks.q,
                   k.w * exp((c.bucket + (k.k - c.below + 0.5) / c.n) / {HIST_SCALE}.0) AS part
            FROM ranks
            CROSS JOIN LATERAL (
                VALUES (floor(ranks.r), 1 - (ranks.r - floor(ranks.r))),
                       (floor(ranks.r) + 1, ranks.r - floor(ranks.r))
            ) AS k(k, w)
            JOIN c ON c.overall = ranks.overall AND c.model IS NOT DISTINCT FROM ranks.model
                  AND c.metric = ranks.metric AND k.k >= c.below AND k.k < c.below + c.n
        ), p AS (
            SELECT overall, model, metric, q, sum(part) AS value
            FROM points
            GROUP BY overall, model, metric, q
        )
        SELECT model,
               max(value) FILTER (WHERE metric = 'ttft' AND q = 0.5),
               max(value) FILTER (WHERE metric = 'ttft' AND q = 0.95),
               max(value) FILTER (WHERE metric = 'tps' AND q = 0.5),
               max(value) FILTER (WHERE metric = 'tps' AND q = 0.95),
               false
        FROM p
        GROUP BY overall, model
    """  # noqa: S608 (fixed SQL fragments only; values are bound)
    return _frame(db, sql, _params(None, rng), LATENCY_COLUMNS)


def _percentiles(
    db: Session, user_id: uuid.UUID | None, rng: DateRange, requests: int, exact_limit: int | None
) -> pd.DataFrame:
    """Exact or estimated; ``exact_limit`` None means ``EXACT_PERCENTILE_ROWS`` as it is now
    (read per call, so a notebook or a test can move the threshold for the whole process)."""
    limit = EXACT_PERCENTILE_ROWS if exact_limit is None else exact_limit
    if user_id is not None or requests <= limit:
        return _exact_percentiles(db, user_id, rng)
    return _estimated_percentiles(db, rng)


def _split(percentiles: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series | None]:
    """(per-model rows sorted by model, the overall row or None)."""
    overall = percentiles[percentiles["model"].isna()]
    per_model = percentiles[percentiles["model"].notna()].sort_values("model")
    return per_model.reset_index(drop=True), (overall.iloc[0] if len(overall) else None)


def _kpi_frame(totals: tuple[Any, ...], overall: pd.Series | None) -> pd.DataFrame:
    requests, prompt, completion, total, errors, cancelled = totals
    if requests == 0:
        return _typed(pd.DataFrame(columns=KPI_COLUMNS))
    median = overall["ttft_p50_ms"] if overall is not None else None
    exact = bool(overall["percentiles_exact"]) if overall is not None else True
    row = (requests, prompt, completion, total, errors, cancelled, errors / requests, median, exact)
    return _typed(pd.DataFrame.from_records([row], columns=KPI_COLUMNS))


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
    _, overall = _split(_percentiles(db, user_id, rng, totals[0], exact_limit))
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
        WHERE {_rollup_where(user_id)}
        GROUP BY 1, 2
        ORDER BY 1, 2
    """  # noqa: S608 (fixed SQL fragments only; values are bound)
    rng = date_range(start, end)
    return _frame(db, sql, _params(user_id, rng), TOKENS_PER_DAY_COLUMNS)


def requests_per_day(
    db: Session, *, user_id: uuid.UUID | None, start: date, end: date
) -> pd.DataFrame:
    """Requests per UTC day and outcome (ok, error, cancelled)."""
    sql = f"""
        SELECT date_trunc('day', d.day::timestamp) AS day, d.outcome, sum(d.requests)
        FROM usage_daily d
        WHERE {_rollup_where(user_id)}
        GROUP BY 1, 2
        ORDER BY 1, 2
    """  # noqa: S608 (fixed SQL fragments only; values are bound)
    rng = date_range(start, end)
    return _frame(db, sql, _params(user_id, rng), REQUESTS_PER_DAY_COLUMNS)


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
        return _typed(pd.DataFrame(columns=LATENCY_COLUMNS))
    per_model, _ = _split(_percentiles(db, user_id, rng, requests, exact_limit))
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
            WHERE {_rollup_where(user_id)} AND d.session_id <> :no_session
            GROUP BY d.session_id
            ORDER BY tokens DESC, d.session_id
            LIMIT :limit
        ) t
        JOIN conversation_sessions s ON s.id = t.session_id
        JOIN users u ON u.id = s.user_id
        ORDER BY t.tokens DESC, t.session_id
    """  # noqa: S608 (fixed SQL fragments only; values are bound)
    rng = date_range(start, end)
    params = _params(user_id, rng, limit=max(1, min(int(limit), 1000)), no_session=NO_SESSION)
    frame = _frame(db, sql, params, TOP_SESSION_COLUMNS)
    frame["session_id"] = frame["session_id"].map(str)
    return frame


def calls(
    db: Session, *, user_id: uuid.UUID | None, start: date, end: date, limit: int = 100_000
) -> pd.DataFrame:
    """The raw usage rows of a range, newest first (for notebooks), at most ``limit`` rows."""
    sql = f"""
        SELECT c.created_at, u.username, c.session_id, c.model, c.backend, c.outcome,
               c.prompt_tokens, c.completion_tokens, c.ttft_ms, c.duration_ms, {_TPS}, c.error
        FROM llm_calls c JOIN users u ON u.id = c.user_id
        WHERE {_raw_where(user_id)}
        ORDER BY c.created_at DESC, c.id DESC
        LIMIT :limit
    """  # noqa: S608 (fixed SQL fragments only; values are bound)
    rng = date_range(start, end)
    params = _params(user_id, rng, limit=max(1, min(int(limit), 5_000_000)))
    frame = _frame(db, sql, params, CALL_COLUMNS)
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
        per_model, overall = _typed(pd.DataFrame(columns=LATENCY_COLUMNS)), None
    else:
        per_model, overall = _split(_percentiles(db, user_id, rng, totals[0], exact_limit))
    return Dashboard(
        range=rng,
        kpis=_kpi_frame(totals, overall),
        tokens_per_day=tokens_per_day(db, user_id=user_id, start=rng.start, end=rng.end),
        requests_per_day=requests_per_day(db, user_id=user_id, start=rng.start, end=rng.end),
        latency_by_model=per_model,
        top_sessions=top_sessions(db, user_id=user_id, start=rng.start, end=rng.end, limit=top),
    )


def rebuild_rollups(db: Session) -> int:
    """Recompute ``usage_daily`` and ``usage_latency_hist`` from ``llm_calls``.

    The triggers keep them exact; this is for an operator after restoring rows by hand (or
    after disabling triggers). Concurrent inserts wait until the caller commits. Returns the
    number of llm_calls rows read.
    """
    db.execute(text("LOCK TABLE llm_calls IN SHARE MODE"))
    db.execute(text("DELETE FROM usage_daily"))
    db.execute(text("DELETE FROM usage_latency_hist"))
    db.execute(
        text("""
        INSERT INTO usage_daily (day, user_id, session_id, model, outcome, requests,
                                 prompt_tokens, completion_tokens)
        SELECT (c.created_at AT TIME ZONE 'UTC')::date, c.user_id,
               coalesce(c.session_id, :no_session), c.model, c.outcome, count(*),
               sum(c.prompt_tokens), sum(c.completion_tokens)
        FROM llm_calls c
        GROUP BY 1, 2, 3, 4, 5
        """),
        {"no_session": NO_SESSION},
    )
    db.execute(
        text(f"""
        INSERT INTO usage_latency_hist (day, model, metric, bucket, calls)
        SELECT (c.created_at AT TIME ZONE 'UTC')::date, c.model, v.metric,
               floor(ln(greatest(v.value, 0.001)) * {HIST_SCALE})::int, count(*)
        FROM llm_calls c
        CROSS JOIN LATERAL (VALUES ('ttft', c.ttft_ms), ('tps', {_TPS})) AS v(metric, value)
        WHERE v.value IS NOT NULL
        GROUP BY 1, 2, 3, 4
        """)  # noqa: S608 (fixed SQL fragments only)
    )
    return int(db.scalar(text("SELECT count(*) FROM llm_calls")) or 0)


# --- quotas --------------------------------------------------------------------------------


def _today_start() -> datetime:
    return now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def tokens_used_today(db: Session, *, user_id: uuid.UUID) -> int:
    """Prompt + completion tokens the user spent since midnight UTC."""
    from sqlalchemy import func

    stmt = select(
        func.coalesce(func.sum(LlmCall.prompt_tokens + LlmCall.completion_tokens), 0)
    ).where(LlmCall.user_id == user_id, LlmCall.created_at >= _today_start())
    return int(db.scalar(stmt) or 0)


def daily_quota(db: Session, *, user_id: uuid.UUID) -> int | None:
    """The user's daily token quota, or None for unlimited.

    A per-user override (``users.daily_token_quota``, set by an admin) wins: a positive number
    is the quota and 0 means unlimited. Without one, DAILY_TOKEN_QUOTA applies (0 = none).
    """
    from core.config import get_settings

    override = db.scalar(select(User.daily_token_quota).where(User.id == user_id))
    if override is not None:
        return int(override) or None
    return get_settings().daily_token_quota or None


@dataclass(frozen=True)
class QuotaStatus:
    """Today's quota position, for the usage page and the chat."""

    used: int
    quota: int | None  # None = unlimited
    source: str  # "user" (admin override) or "default" (DAILY_TOKEN_QUOTA)
    resets_at: datetime

    @property
    def remaining(self) -> int | None:
        return None if self.quota is None else max(0, self.quota - self.used)

    @property
    def fraction_used(self) -> float | None:
        return None if not self.quota else min(1.0, self.used / self.quota)


def quota_status(db: Session, *, user_id: uuid.UUID) -> QuotaStatus:
    override = db.scalar(select(User.daily_token_quota).where(User.id == user_id))
    return QuotaStatus(
        used=tokens_used_today(db, user_id=user_id),
        quota=daily_quota(db, user_id=user_id),
        source="user" if override is not None else "default",
        resets_at=_today_start() + timedelta(days=1),
    )


def set_daily_quota(db: Session, *, actor: Identity, user_id: uuid.UUID, quota: int | None) -> None:
    """An admin sets a user's daily quota: a number of tokens, 0 = unlimited, None = default."""
    if not actor.is_admin:
        raise Forbidden("Only administrators can change a user's token quota.")
    if quota is not None:
        if isinstance(quota, bool) or not isinstance(quota, int) or quota < 0:
            raise InvalidInput("quota", "The quota must be a whole number of tokens, 0 or more.")
        if quota > MAX_QUOTA:
            raise InvalidInput("quota", f"The quota must be at most {MAX_QUOTA:,} tokens.")
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("User not found.")
    user.daily_token_quota = quota
    db.flush()


def check_quota(db: Session, *, user_id: uuid.UUID) -> None:
    """Raise ``QuotaExceeded`` (before any model call) when today's quota is used up."""
    from core import metrics
    from core.errors import QuotaExceeded

    quota = daily_quota(db, user_id=user_id)
    if quota is None:
        return
    used = tokens_used_today(db, user_id=user_id)
    if used >= quota:
        metrics.QUOTA_REFUSALS.inc()
        raise QuotaExceeded(
            f"Daily token quota reached: {used:,} of {quota:,} tokens used today. "
            "It resets at midnight UTC; an admin can raise it."
        )
