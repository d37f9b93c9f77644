"""accounts: lockout for unknown names, must-change-password after an admin reset

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 02:16:48.582977
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Failed logins for names without an account, so they lock exactly like real accounts.
    op.create_table(
        "login_failures",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("failed_logins", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_login_failures")),
    )
    op.create_index("ix_login_failures_updated_at", "login_failures", ["updated_at"], unique=False)
    op.add_column(
        "users",
        sa.Column("must_change_password", sa.Boolean(), server_default="false", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("users", "must_change_password")
    op.drop_index("ix_login_failures_updated_at", table_name="login_failures")
    op.drop_table("login_failures")
