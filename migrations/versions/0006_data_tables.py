"""analysts' tables: uploaded files as Parquet in PostgreSQL, tables attached to chats, and
the tool calls each model request made

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_tables",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=48), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("file_format", sa.String(length=10), nullable=False),
        sa.Column("file_bytes", sa.BigInteger(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("columns", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("parquet", sa.LargeBinary(), nullable=False),
        sa.Column("parquet_bytes", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("name ~ '^[a-z][a-z0-9_]{0,47}$'", name=op.f("ck_data_tables_name")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_data_tables_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_tables")),
    )
    # The Parquet is compressed already: PostgreSQL storing it as is (no pglz attempt) halves
    # the time an upload spends in the INSERT (benchmarks/data.py).
    op.execute("ALTER TABLE data_tables ALTER COLUMN parquet SET STORAGE EXTERNAL")
    op.create_index(
        "uq_data_tables_user_name",
        "data_tables",
        ["user_id", sa.text("lower(name)")],
        unique=True,
    )
    op.create_table(
        "session_tables",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("table_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["conversation_sessions.id"],
            name=op.f("fk_session_tables_session_id_conversation_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["table_id"],
            ["data_tables.id"],
            name=op.f("fk_session_tables_table_id_data_tables"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "table_id", name=op.f("pk_session_tables")),
    )
    op.add_column(
        "llm_calls", sa.Column("tool_calls", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("llm_calls", "tool_calls")
    op.drop_table("session_tables")
    op.drop_index("uq_data_tables_user_name", table_name="data_tables")
    op.drop_table("data_tables")
