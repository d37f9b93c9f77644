"""Engine and session factories, created on first use (never at import time).

Core functions receive a ``Session`` and never commit; the edge (page, CLI, test) owns the
transaction, usually through ``session_scope()``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from core.config import get_settings
from core.errors import ConfigError
from core.services import database_url
from core.urls import redact_url

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


def make_engine(url: str) -> Engine:
    """An engine with settings that suit a Streamlit server (many short transactions)."""
    try:
        return create_engine(
            url,
            pool_pre_ping=True,  # a restarted PostgreSQL costs one retry, not an error page
            pool_size=10,
            max_overflow=20,
            pool_timeout=10,
            connect_args={"connect_timeout": 5, "application_name": "ledger"},
        )
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"DATABASE_URL={redact_url(url)!r}: not a valid URL "
            "(expected postgresql://user:password@host:5432/database)"
        ) from None


def get_engine(url: str | None = None) -> Engine:
    """The process's engine for ``url`` (default: the configured or embedded database)."""
    url = url or database_url(get_settings())
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
    return engine


def get_sessionmaker(url: str | None = None) -> sessionmaker[Session]:
    engine = get_engine(url)
    key = str(engine.url)
    with _lock:
        factory = _factories.get(key)
        if factory is None:
            factory = _factories[key] = sessionmaker(engine, expire_on_commit=False)
    return factory


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset() -> None:
    """Dispose every engine (tests and notebooks that point elsewhere call this)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()
