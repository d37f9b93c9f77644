"""The suite's databases: emptied from a module-scoped fixture (the per-test ``clean_state``
fixture cannot serve one app process shared by a module's tests), and read fresh by tests."""

from __future__ import annotations

import uuid

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core import database, services
from core.models import Base, ConversationSession, LlmCall


def empty_tables() -> None:
    """Every table truncated and the Redis database flushed (core's configured servers)."""
    tables = ", ".join(f'"{t.name}"' for t in reversed(Base.metadata.sorted_tables))
    with database.get_engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    services.redis_client().flushdb()


def calls(dbs: Session) -> list[LlmCall]:
    """Every usage row, oldest first, as committed now (not as ``dbs`` last saw them)."""
    dbs.expire_all()
    return list(dbs.scalars(select(LlmCall).order_by(LlmCall.id)))


def session_row(dbs: Session, sid: uuid.UUID) -> ConversationSession:
    """A session's row as committed now."""
    dbs.expire_all()
    row = dbs.get(ConversationSession, sid)
    assert row is not None
    return row
