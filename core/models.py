"""SQLAlchemy 2.0 typed models. The schema itself changes only through Alembic revisions;
``tests/integration/test_migrations.py`` proves the two agree."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, REAL, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("user", "admin")
OUTCOMES = ("ok", "truncated", "error", "cancelled")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> datetime:
    from core.clock import now

    return now()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # Case-insensitive uniqueness: "Alice" and "alice" are one account.
        Index("uq_users_username_lower", func.lower(text("username")), unique=True),
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
        CheckConstraint("role IN ('user', 'admin')", name="role"),
        CheckConstraint(
            "daily_token_quota IS NULL OR daily_token_quota >= 0", name="daily_token_quota"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(32), nullable=False)
    email: Mapped[str] = mapped_column(String(254), nullable=False)
    display_name: Mapped[str] = mapped_column(String(100), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(100), nullable=False)
    role: Mapped[str] = mapped_column(String(10), nullable=False, server_default="user")
    tokens_valid_after: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, server_default=func.now()
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, server_default=func.now()
    )
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    # Set by an admin's password reset (a one-time password): the user must choose a new one.
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default="false"
    )
    # Per-user override of DAILY_TOKEN_QUOTA, set by admins: NULL = the default, 0 = unlimited.
    daily_token_quota: Mapped[int | None] = mapped_column(BigInteger)

    sessions: Mapped[list[ConversationSession]] = relationship(
        back_populates="owner", cascade="all, delete-orphan", passive_deletes=True
    )


class LoginToken(Base):
    """One login (one cookie): Logout revokes exactly this one, so a copied cookie ends too."""

    __tablename__ = "login_tokens"
    __table_args__ = (
        Index("ix_login_tokens_user_id", "user_id"),
        Index("ix_login_tokens_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, server_default=func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginAttempt(Base):
    """Failed logins in a row for one name from one client, and the lock they led to.

    ``client`` is ``addr:<address>``, ``device:<id>`` (a browser holding a device cookie for the
    name) or ``*`` (every client without one, together). Names with and without an account are
    counted alike, so the login form's answers never reveal whether a username exists.
    """

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_updated_at", "updated_at"),)

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    client: Mapped[str] = mapped_column(String(80), primary_key=True)
    failed: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, server_default=func.now()
    )


class ConversationSession(Base):
    __tablename__ = "conversation_sessions"
    __table_args__ = (
        # "A user's sessions, newest first", with id as tie-breaker for stable paging.
        Index("ix_sessions_owner_updated", "user_id", text("updated_at DESC"), text("id DESC")),
        # Everyone's sessions, newest first: the admin's "all users" list and search (0004).
        Index("ix_sessions_updated", text("updated_at DESC"), text("id DESC")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(String(200), nullable=False, server_default="New chat")
    model: Mapped[str] = mapped_column(String(200), nullable=False, server_default="")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, server_default=func.now()
    )
    message_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")

    owner: Mapped[User] = relationship(back_populates="sessions")


class LlmCall(Base):
    """One request to a model: the usage ledger. Survives deletion of its session."""

    __tablename__ = "llm_calls"
    __table_args__ = (
        CheckConstraint("outcome IN ('ok', 'truncated', 'error', 'cancelled')", name="outcome"),
        # A user's range (quota check, one user's exact percentiles) and everyone's range, both
        # covering what those queries read, so they are index-only scans (migration 0004).
        Index(
            "ix_llm_calls_user_created",
            "user_id",
            "created_at",
            postgresql_include=[
                "model",
                "outcome",
                "prompt_tokens",
                "completion_tokens",
                "ttft_ms",
                "duration_ms",
            ],
        ),
        Index(
            "ix_llm_calls_created",
            "created_at",
            postgresql_include=["model", "outcome", "completion_tokens", "ttft_ms", "duration_ms"],
        ),
        Index("ix_llm_calls_session", "session_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conversation_sessions.id", ondelete="SET NULL")
    )
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    backend: Mapped[str] = mapped_column(String(20), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    duration_ms: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    outcome: Mapped[str] = mapped_column(String(10), nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    tool_calls: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, server_default=func.now()
    )


NO_SESSION = uuid.UUID(int=0)


class DataTable(Base):
    """An analyst's uploaded table: its facts, and its rows as Parquet (loaded only when a
    query or a download needs them), so every app process can serve it."""

    __tablename__ = "data_tables"
    __table_args__ = (
        Index("uq_data_tables_user_name", "user_id", func.lower(text("name")), unique=True),
        CheckConstraint("name ~ '^[a-z][a-z0-9_]{0,47}$'", name="name"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(48), nullable=False)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    file_format: Mapped[str] = mapped_column(String(10), nullable=False)
    file_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    row_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    columns: Mapped[list[dict[str, str]]] = mapped_column(JSONB, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    parquet: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)
    parquet_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, server_default=func.now()
    )


class PromptTemplate(Base):
    """A user's own prompt template (the shipped ones live in core.templates)."""

    __tablename__ = "prompt_templates"
    __table_args__ = (
        Index("uq_prompt_templates_user_name", "user_id", func.lower(text("name")), unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, server_default=func.now()
    )


class SessionTable(Base):
    """A table attached to a conversation: the model may query it in that chat."""

    __tablename__ = "session_tables"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversation_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    table_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("data_tables.id", ondelete="CASCADE"), primary_key=True
    )


class UsageDaily(Base):
    """Daily rollup of ``llm_calls`` (UTC days), kept exact by statement triggers on
    ``llm_calls`` (migration 0004); the app never writes it. ``session_id`` is not a foreign
    key: a deleted session's figures stay (like its usage rows); ``NO_SESSION`` = none."""

    __tablename__ = "usage_daily"
    __table_args__ = (Index("ix_usage_daily_user_day", "user_id", "day"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    session_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(10), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)


class UsageLatencyHistogram(Base):
    """Per day and model, how many calls fell in each 1 % wide logarithmic bucket of time to
    first token (``ttft``, ms) and generation speed (``tps``, tokens/s): bucket
    ``floor(ln(value) * 100)``. Everyone's percentiles over long ranges come from here
    (within 1 %); smaller scopes use ``percentile_cont`` on the rows. Kept by the same
    triggers as ``usage_daily``."""

    __tablename__ = "usage_latency_hist"
    __table_args__ = (CheckConstraint("metric IN ('ttft', 'tps')", name="metric"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    metric: Mapped[str] = mapped_column(String(4), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger, nullable=False)


class Document(Base):
    """An analyst's document (PDF, HTML, Markdown, text): its facts and the file itself."""

    __tablename__ = "documents"
    __table_args__ = (Index("uq_documents_user_sha256", "user_id", "sha256", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    file_format: Mapped[str] = mapped_column(String(10), nullable=False)
    file_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    pages: Mapped[int] = mapped_column(Integer, nullable=False)
    chunk_count: Mapped[int] = mapped_column(Integer, nullable=False)
    embedding_model: Mapped[str | None] = mapped_column(String(200))
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, server_default=func.now()
    )


class DocumentChunk(Base):
    """A piece of a document's text on one page, with its heading; searched by its words
    (``tsv``, kept by PostgreSQL) and, when an embedder is set, by its vector."""

    __tablename__ = "document_chunks"
    __table_args__ = (
        Index("ix_document_chunks_tsv", "tsv", postgresql_using="gin"),
        Index("ix_document_chunks_user_document", "user_id", "document_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    page: Mapped[int] = mapped_column(Integer, nullable=False)
    ordinal: Mapped[int] = mapped_column(Integer, nullable=False)
    heading: Mapped[str | None] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    tsv: Mapped[str] = mapped_column(
        TSVECTOR,
        Computed(
            "to_tsvector('english'::regconfig, "
            "COALESCE(heading, ''::text) || ' '::text || content)",
            persisted=True,
        ),
    )
    embedding: Mapped[list[float] | None] = mapped_column(ARRAY(REAL))


class SessionDocument(Base):
    """A document attached to a conversation: each prompt there is answered from it."""

    __tablename__ = "session_documents"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversation_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )


class QuotaReservation(Base):
    """Tokens a chat turn in flight may still use, held against its user's daily quota so two
    app processes cannot both spend the last of it; deleted when the turn's usage row is
    written (in the same transaction). A turn whose process died leaves one, which stops
    counting after its ``expires_at``."""

    __tablename__ = "quota_reservations"
    __table_args__ = (Index("ix_quota_reservations_user_expires", "user_id", "expires_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
