"""Emptying the suite's databases from a module-scoped fixture (the per-test ``clean_state``
fixture cannot serve one app process shared by a module's tests)."""

from __future__ import annotations

from sqlalchemy import text

from core import database, services
from core.models import Base


def empty_tables() -> None:
    """Every table truncated and the Redis database flushed (core's configured servers)."""
    tables = ", ".join(f'"{t.name}"' for t in reversed(Base.metadata.sorted_tables))
    with database.get_engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    services.redis_client().flushdb()
