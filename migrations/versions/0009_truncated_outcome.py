"""llm_calls.outcome may be 'truncated': a reply cut off at the length limit or stopped in a
repetition loop is recorded as such, not as 'ok'

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 13:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_llm_calls_outcome"), "llm_calls", type_="check")
    op.create_check_constraint(
        op.f("ck_llm_calls_outcome"),
        "llm_calls",
        "outcome IN ('ok', 'truncated', 'error', 'cancelled')",
    )


def downgrade() -> None:
    op.execute("UPDATE llm_calls SET outcome = 'ok' WHERE outcome = 'truncated'")
    op.drop_constraint(op.f("ck_llm_calls_outcome"), "llm_calls", type_="check")
    op.create_check_constraint(
        op.f("ck_llm_calls_outcome"), "llm_calls", "outcome IN ('ok', 'error', 'cancelled')"
    )
