"""logins: a row per issued login token (revoked on Logout); failed attempts keyed on the
name and the client (address or device) instead of on the name alone

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Each login's token, so Logout can end exactly that one (a copied cookie dies with it).
    op.create_table(
        "login_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_login_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_tokens")),
    )
    op.create_index("ix_login_tokens_user_id", "login_tokens", ["user_id"], unique=False)
    op.create_index("ix_login_tokens_expires_at", "login_tokens", ["expires_at"], unique=False)
    # Failed logins per (name, client): known and unknown names alike, so nothing tells them
    # apart; the client is an address, a device (its cookie) or '*' (every untrusted client).
    op.create_table(
        "login_attempts",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=80), nullable=False),
        sa.Column("failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name", "client", name=op.f("pk_login_attempts")),
    )
    op.create_index("ix_login_attempts_updated_at", "login_attempts", ["updated_at"], unique=False)
    op.drop_index("ix_login_failures_updated_at", table_name="login_failures")
    op.drop_table("login_failures")
    op.drop_column("users", "failed_logins")
    op.drop_column("users", "locked_until")


def downgrade() -> None:
    op.add_column("users", sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "users", sa.Column("failed_logins", sa.Integer(), server_default="0", nullable=False)
    )
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
    op.drop_index("ix_login_attempts_updated_at", table_name="login_attempts")
    op.drop_table("login_attempts")
    op.drop_index("ix_login_tokens_expires_at", table_name="login_tokens")
    op.drop_index("ix_login_tokens_user_id", table_name="login_tokens")
    op.drop_table("login_tokens")
