"""usage rollups and covering indexes for the usage dashboard

The usage page over a million llm_calls rows must answer in well under a second. Counts and
sums come from ``usage_daily`` (one row per UTC day, user, session, model and outcome), and
everyone's latency percentiles over large ranges from ``usage_latency_hist`` (1 % wide
logarithmic buckets). Statement-level triggers with transition tables keep both exact on every
INSERT, UPDATE and DELETE of llm_calls, one aggregated upsert per statement (so a bulk COPY
costs one pass). The llm_calls indexes gain INCLUDE columns so a user's range (quota, exact
percentiles) is read by index-only scans, and everyone's sessions can be listed newest first
from an index (the admin's "all users" view).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NIL = "'00000000-0000-0000-0000-000000000000'::uuid"

# Generation speed: completion tokens per second after the first token (same as core.usage).
TPS = """CASE WHEN r.outcome = 'ok' AND r.completion_tokens > 0 AND r.ttft_ms IS NOT NULL
              AND r.duration_ms > r.ttft_ms
         THEN r.completion_tokens * 1000.0 / (r.duration_ms - r.ttft_ms) END"""


def _daily_rows(source: str) -> str:
    return f"""
        SELECT (r.created_at AT TIME ZONE 'UTC')::date AS day, r.user_id,
               coalesce(r.session_id, {NIL}) AS session_id, r.model, r.outcome,
               count(*) AS requests, sum(r.prompt_tokens) AS prompt_tokens,
               sum(r.completion_tokens) AS completion_tokens
        FROM {source} r
        GROUP BY 1, 2, 3, 4, 5"""  # noqa: S608 (fixed SQL, no user input)


def _hist_rows(source: str) -> str:
    return f"""
        SELECT (r.created_at AT TIME ZONE 'UTC')::date AS day, r.model, v.metric,
               floor(ln(greatest(v.value, 0.001)) * 100)::int AS bucket, count(*) AS calls
        FROM {source} r
        CROSS JOIN LATERAL (VALUES ('ttft', r.ttft_ms), ('tps', {TPS})) AS v(metric, value)
        WHERE v.value IS NOT NULL
        GROUP BY 1, 2, 3, 4"""  # noqa: S608


def _add(source: str) -> str:
    return f"""
    INSERT INTO usage_daily AS d (day, user_id, session_id, model, outcome, requests,
                                  prompt_tokens, completion_tokens)
    {_daily_rows(source)}
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (day, user_id, session_id, model, outcome) DO UPDATE
    SET requests = d.requests + excluded.requests,
        prompt_tokens = d.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = d.completion_tokens + excluded.completion_tokens;

    INSERT INTO usage_latency_hist AS h (day, model, metric, bucket, calls)
    {_hist_rows(source)}
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (day, model, metric, bucket) DO UPDATE SET calls = h.calls + excluded.calls;
"""  # noqa: S608


def _subtract(source: str) -> str:
    # UPDATE, never upsert: rows already removed by a cascade (a deleted user) stay removed.
    return f"""
    UPDATE usage_daily d
    SET requests = d.requests - o.requests,
        prompt_tokens = d.prompt_tokens - o.prompt_tokens,
        completion_tokens = d.completion_tokens - o.completion_tokens
    FROM ({_daily_rows(source)}) o
    WHERE d.day = o.day AND d.user_id = o.user_id AND d.session_id = o.session_id
      AND d.model = o.model AND d.outcome = o.outcome;

    DELETE FROM usage_daily d
    USING ({_daily_rows(source)}) o
    WHERE d.day = o.day AND d.user_id = o.user_id AND d.session_id = o.session_id
      AND d.model = o.model AND d.outcome = o.outcome AND d.requests <= 0;

    UPDATE usage_latency_hist h SET calls = h.calls - o.calls
    FROM ({_hist_rows(source)}) o
    WHERE h.day = o.day AND h.model = o.model AND h.metric = o.metric AND h.bucket = o.bucket;

    DELETE FROM usage_latency_hist h
    USING ({_hist_rows(source)}) o
    WHERE h.day = o.day AND h.model = o.model AND h.metric = o.metric AND h.bucket = o.bucket
      AND h.calls <= 0;
"""  # noqa: S608


def _function(name: str, body: str) -> str:
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
{body}
    RETURN NULL;
END
$fn$;
"""


FUNCTIONS = {
    "ledger_usage_after_insert": _add("new_rows"),
    "ledger_usage_after_delete": _subtract("old_rows"),
    "ledger_usage_after_update": _subtract("old_rows") + _add("new_rows"),
}

TRIGGERS = {
    "ledger_usage_insert": "AFTER INSERT ON llm_calls REFERENCING NEW TABLE AS new_rows",
    "ledger_usage_delete": "AFTER DELETE ON llm_calls REFERENCING OLD TABLE AS old_rows",
    "ledger_usage_update": (
        "AFTER UPDATE ON llm_calls REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    ),
}

USER_INCLUDE = ["model", "outcome", "prompt_tokens", "completion_tokens", "ttft_ms", "duration_ms"]
ALL_INCLUDE = ["model", "outcome", "completion_tokens", "ttft_ms", "duration_ms"]


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_usage_daily_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "day", "user_id", "session_id", "model", "outcome", name=op.f("pk_usage_daily")
        ),
    )
    op.create_index("ix_usage_daily_user_day", "usage_daily", ["user_id", "day"], unique=False)
    op.create_table(
        "usage_latency_hist",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=4), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("metric IN ('ttft', 'tps')", name=op.f("ck_usage_latency_hist_metric")),
        sa.PrimaryKeyConstraint(
            "day", "model", "metric", "bucket", name=op.f("pk_usage_latency_hist")
        ),
    )

    op.drop_index("ix_llm_calls_user_created", table_name="llm_calls")
    op.drop_index("ix_llm_calls_created", table_name="llm_calls")
    op.create_index(
        "ix_llm_calls_user_created",
        "llm_calls",
        ["user_id", "created_at"],
        unique=False,
        postgresql_include=USER_INCLUDE,
    )
    op.create_index(
        "ix_llm_calls_created",
        "llm_calls",
        ["created_at"],
        unique=False,
        postgresql_include=ALL_INCLUDE,
    )

    op.create_index(
        "ix_sessions_updated",
        "conversation_sessions",
        [sa.literal_column("updated_at DESC"), sa.literal_column("id DESC")],
        unique=False,
    )

    for name, body in FUNCTIONS.items():
        op.execute(_function(name, body))
    for (trigger, event), function in zip(TRIGGERS.items(), FUNCTIONS, strict=True):
        op.execute(
            f"CREATE TRIGGER {trigger} {event} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )

    # Rows that exist already (an upgraded database).
    for statement in _add("llm_calls").split(";\n"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON llm_calls")
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_index("ix_sessions_updated", table_name="conversation_sessions")
    op.drop_index("ix_llm_calls_created", table_name="llm_calls")
    op.drop_index("ix_llm_calls_user_created", table_name="llm_calls")
    op.create_index("ix_llm_calls_created", "llm_calls", ["created_at"], unique=False)
    op.create_index(
        "ix_llm_calls_user_created", "llm_calls", ["user_id", "created_at"], unique=False
    )
    op.drop_table("usage_latency_hist")
    op.drop_index("ix_usage_daily_user_day", table_name="usage_daily")
    op.drop_table("usage_daily")
