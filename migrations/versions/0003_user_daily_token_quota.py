"""per-user daily token quota

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL = the DAILY_TOKEN_QUOTA default applies; 0 = unlimited for this user.
    op.add_column("users", sa.Column("daily_token_quota", sa.BigInteger(), nullable=True))
    op.create_check_constraint(
        "daily_token_quota",
        "users",
        "daily_token_quota IS NULL OR daily_token_quota >= 0",
    )


def downgrade() -> None:
    op.drop_constraint("daily_token_quota", "users", type_="check")
    op.drop_column("users", "daily_token_quota")
