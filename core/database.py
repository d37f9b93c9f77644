"""Engine and session factories, created on first use (never at import time).

Core functions receive a ``Session`` and never commit; the edge (page, CLI, test) owns the
transaction, usually through ``session_scope()``.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from core.config import get_settings
from core.errors import ConfigError
from core.services import database_url
from core.urls import redact_url

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


POOL_SIZE, MAX_OVERFLOW = 10, 20  # per process: at most 30 connections


def make_engine(url: str) -> Engine:
    """An engine with settings that suit a Streamlit server (many short transactions)."""
    try:
        engine = create_engine(
            url,
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            pool_timeout=10,
            connect_args={"connect_timeout": 5, "application_name": "ledger"},
        )
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"DATABASE_URL={redact_url(url)!r}: not a valid URL "
            "(expected postgresql://user:password@host:5432/database)"
        ) from None
    # A restarted PostgreSQL costs a fresh connection, not an error page. SQLAlchemy's
    # pool_pre_ping would ask the server on every checkout (a round trip per transaction, and
    # a chat turn opens several before its first token); this asks the socket instead.
    event.listen(engine, "checkout", _drop_if_dead)
    return engine


def _drop_if_dead(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Refuse a pooled connection the server has ended, so the pool opens a new one.

    An idle connection has nothing to read unless the server said goodbye: a shutdown or a
    restart sends "terminating connection" and closes the socket, a killed server leaves an
    end-of-file. Either makes the socket readable, seen here without a round trip. (A server
    that merely sent a notice, which Ledger never asks for, costs a reconnect, nothing more.)
    A server gone without a word (a cable pulled) is found by the query's own error, as with
    pre-ping it would have been found by the ping's timeout.
    """
    if dbapi_connection.closed:
        raise DisconnectionError("the connection is closed")
    try:
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), select.POLLIN)
        events = poller.poll(0)
    except (OSError, ValueError):  # no socket any more
        raise DisconnectionError("the connection has no socket") from None
    if events:
        raise DisconnectionError("the server ended the connection")


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


@contextmanager
def read_scope(url: str | None = None) -> Iterator[Session]:
    """Reads without a transaction (autocommit): no BEGIN and no COMMIT round trips, for the
    checks every page run makes. Anything written here would be committed statement by
    statement, so only reads belong in it."""
    session = get_sessionmaker(url)()
    try:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session
    finally:
        session.close()


def reset() -> None:
    """Dispose every engine (tests and notebooks that point elsewhere call this)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()
