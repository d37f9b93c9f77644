"""Latency percentiles of the usage ledger: time to first token and generation speed, median
and p95, per model and overall.

Exact (``percentile_cont`` over the rows) for one user, and for everyone while the range holds
at most ``EXACT_PERCENTILE_ROWS`` requests; beyond that everyone's percentiles are estimated
from ``usage_latency_hist`` (1 % wide logarithmic buckets, so within 1 % of the exact value).
Frames say which: ``percentiles_exact``. The rollup tables are kept exact by triggers;
``rebuild_rollups`` recomputes them.
"""

from __future__ import annotations

import uuid

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.models import NO_SESSION
from core.usage_query import (
    LATENCY_COLUMNS,
    TPS,
    DateRange,
    frame,
    raw_where,
    typed,
)

EXACT_PERCENTILE_ROWS = 50_000
HIST_SCALE = 100  # buckets per unit of ln(value): 1 % wide


def exact(db: Session, user_id: uuid.UUID | None, rng: DateRange) -> pd.DataFrame:
    """percentile_cont over the rows: per model, and overall (model NULL)."""
    sql = f"""
        SELECT c.model,
               percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY c.ttft_ms),
               percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY {TPS})
        FROM llm_calls c
        WHERE {raw_where(user_id)}
        GROUP BY GROUPING SETS ((c.model), ())
    """  # noqa: S608 (fixed SQL fragments only; values are bound)
    records = []
    for model, ttft, tps in db.execute(text(sql), rng.params(user_id)).all():
        ttft = ttft or [None, None]
        tps = tps or [None, None]
        records.append((model, ttft[0], ttft[1], tps[0], tps[1], True))
    return typed(pd.DataFrame.from_records(records, columns=LATENCY_COLUMNS))


def estimated(db: Session, rng: DateRange) -> pd.DataFrame:
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
    return frame(db, sql, rng.params(None), LATENCY_COLUMNS)


def percentiles(
    db: Session, user_id: uuid.UUID | None, rng: DateRange, requests: int, exact_limit: int | None
) -> pd.DataFrame:
    """Exact or estimated; ``exact_limit`` None means ``EXACT_PERCENTILE_ROWS`` as it is now
    (read per call, so a notebook or a test can move the threshold for the whole process)."""
    limit = EXACT_PERCENTILE_ROWS if exact_limit is None else exact_limit
    if user_id is not None or requests <= limit:
        return exact(db, user_id, rng)
    return estimated(db, rng)


def split(percentiles: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series | None]:
    """(per-model rows sorted by model, the overall row or None)."""
    overall = percentiles[percentiles["model"].isna()]
    per_model = percentiles[percentiles["model"].notna()].sort_values("model")
    return per_model.reset_index(drop=True), (overall.iloc[0] if len(overall) else None)


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
        CROSS JOIN LATERAL (VALUES ('ttft', c.ttft_ms), ('tps', {TPS})) AS v(metric, value)
        WHERE v.value IS NOT NULL
        GROUP BY 1, 2, 3, 4
        """)  # noqa: S608 (fixed SQL fragments only)
    )
    return int(db.scalar(text("SELECT count(*) FROM llm_calls")) or 0)
