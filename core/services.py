"""Hands out the clients to PostgreSQL and Redis: the configured URLs, or the embedded servers.

With DATABASE_URL unset, the database is the embedded PostgreSQL under ``DATA_DIR/postgres``
(``core.embedded.postgres``); with REDIS_URL unset, Redis is the embedded server under
``DATA_DIR/redis`` (``core.embedded.redis``). Besides the clients, this module says which
services are in use (``describe``), whether they answer (``ping_*``) and what a storage failure
means in one line (``explain``); ``core.readiness`` builds its answers from these.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import redis
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import InterfaceError as SAInterfaceError

from core.config import Settings, get_settings
from core.datadir import real_path
from core.embedded import postgres as embedded_postgres
from core.embedded import redis as embedded_redis
from core.errors import (
    ConfigError,
    LedgerError,
    ServiceUnavailable,
    StorageRefused,
    first_line,
)
from core.urls import redact_url, sqlalchemy_url

_lock = threading.RLock()
_redis_clients: dict[str, redis.Redis] = {}


@dataclass(frozen=True)
class ServiceInfo:
    """What a page shows about a backing service."""

    name: str
    url: str  # password hidden
    embedded: bool


# --- PostgreSQL ----------------------------------------------------------------------------


def database_url(settings: Settings | None = None) -> str:
    """The SQLAlchemy URL of the database to use, starting the embedded one if none is set."""
    settings = settings or get_settings()
    if settings.database_url:
        return sqlalchemy_url(settings.database_url)
    return embedded_postgres.start_embedded_postgres(settings.data_dir)


def ping_postgres(engine: Engine) -> None:
    """Raise ``ServiceUnavailable`` with a one-line reason unless PostgreSQL answers."""
    try:
        # Autocommit: one round trip (no BEGIN, no ROLLBACK), since pages check every run.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        url = engine_url_of(engine)
        raise ServiceUnavailable("PostgreSQL", url, first_line(exc, engine.url.password)) from None


def engine_url_of(engine: Engine) -> str:
    """A printable URL for an engine (password hidden)."""
    return redact_url(engine.url.render_as_string(hide_password=True))


# --- Redis ---------------------------------------------------------------------------------


def redis_client(settings: Settings | None = None) -> redis.Redis:
    """The process's Redis client (decoded strings), starting the embedded server if needed."""
    settings = settings or get_settings()
    key = settings.redis_url or f"embedded:{real_path(settings.data_dir)}"
    with _lock:
        client = _redis_clients.get(key)
        if client is None:
            if settings.redis_url:
                try:
                    client = redis.Redis.from_url(
                        settings.redis_url,
                        decode_responses=True,
                        socket_connect_timeout=3,
                        socket_timeout=10,
                        health_check_interval=30,
                        retry_on_timeout=False,
                        retry=embedded_redis.retry_policy(2),
                    )
                except ValueError as exc:
                    raise ConfigError(
                        f"REDIS_URL={redact_url(settings.redis_url)!r}: not a valid URL ({exc})"
                    ) from None
            else:
                handle = embedded_redis.attach(
                    settings.data_dir, appendfsync=settings.redis_appendfsync
                )
                client = handle.reviving_client(timeout=5, retries=2)
            _redis_clients[key] = client
    return client


def redis_url_of(client: redis.Redis) -> str:
    """A printable URL for a client (password hidden)."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    host, port, db = kwargs.get("host"), kwargs.get("port"), kwargs.get("db", 0)
    auth = f"{kwargs.get('username') or ''}:***@" if kwargs.get("password") else ""
    return f"redis://{auth}{host}:{port}/{db}"


def ping_redis(client: redis.Redis) -> None:
    """Raise ``ServiceUnavailable`` with a one-line reason unless Redis answers, or
    ``StorageRefused`` when it answers but refuses writes (a full disk refuses PING too)."""
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        refusal = redis_refusal(exc)
        if refusal is not None:
            raise StorageRefused("Redis", redis_url_of(client), refusal) from None
        password = client.connection_pool.connection_kwargs.get("password")
        reason = _redis_reason(exc, password)
        raise ServiceUnavailable("Redis", redis_url_of(client), reason) from None


def redis_refusal(exc: BaseException) -> str | None:
    """Why a Redis that answers refused a write, in words an analyst can pass on; None when
    the error is not a refusal of that kind."""
    if isinstance(exc, redis.OutOfMemoryError):
        return (
            "it is out of memory (maxmemory reached); an administrator must free memory or "
            "raise maxmemory."
        )
    if isinstance(exc, redis.ReadOnlyError):
        return "it is a read-only replica; REDIS_URL must name the primary."
    if isinstance(exc, redis.ResponseError) and "MISCONF" in str(exc):
        said = str(exc).splitlines()[0].rstrip(".")
        return (
            f"it cannot write to its disk (full or not writable; Redis says: {said}); "
            "an administrator must free disk space."
        )
    return None


def _redis_reason(exc: BaseException, password: str | None) -> str:
    """Redis's own words, except where they do not say what to fix: a server that wants a
    password answers a client without one with a remark about its HELLO command."""
    line = first_line(exc, password)
    if not isinstance(exc, redis.AuthenticationError):
        return line
    if not password:
        return (
            "it requires a password and REDIS_URL gives none "
            "(put it in the URL: redis://:PASSWORD@host:6379/0)"
        )
    return f"it refused the password in REDIS_URL: {line}"


# --- for pages, the CLI and the router -----------------------------------------------------


def describe(settings: Settings | None = None) -> list[ServiceInfo]:
    """The services this process uses, for display (no connection is made)."""
    settings = settings or get_settings()
    data = real_path(settings.data_dir)
    db = (
        ServiceInfo("PostgreSQL", redact_url(settings.database_url), False)
        if settings.database_url
        else ServiceInfo("PostgreSQL", f"embedded (pgserver) in {data / 'postgres'}", True)
    )
    rd = (
        ServiceInfo("Redis", redact_url(settings.redis_url), False)
        if settings.redis_url
        else ServiceInfo("Redis", f"embedded (redis-server, AOF) in {data / 'redis'}", True)
    )
    return [db, rd]


def explain(exc: BaseException) -> LedgerError | None:
    """A user-facing error for a database or Redis failure that escaped the core functions.

    The CLI and the app print this one line instead of a traceback. Returns None for anything
    else (a bug, which should keep its traceback).
    """
    if isinstance(exc, LedgerError):
        return exc
    try:
        postgres, redis_info = describe()
    except ConfigError as config_error:
        return config_error
    if isinstance(exc, OperationalError | SAInterfaceError):
        return ServiceUnavailable("PostgreSQL", postgres.url, first_line(exc))
    if isinstance(exc, DBAPIError):
        return ServiceUnavailable("PostgreSQL", postgres.url, f"it refused: {first_line(exc)}")
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return ServiceUnavailable("Redis", redis_info.url, first_line(exc))
    return None


def shutdown() -> None:
    """Leave the embedded servers now (the last process to leave stops them).

    Normally atexit does this; a server that ends by re-raising SIGTERM (uvicorn, behind
    Streamlit's ``st.App``) skips atexit, so the app calls this from its lifespan shutdown.
    """
    with _lock:
        for client in list(_redis_clients.values()):
            client.connection_pool.disconnect()
        _redis_clients.clear()
        embedded_redis.leave_all()
        embedded_postgres.leave_all()


def reset() -> None:
    """Forget cached clients (tests and notebooks that change settings call this).

    The embedded servers stay in use by this process until it exits or calls ``shutdown``.
    """
    with _lock:
        for client in _redis_clients.values():
            client.connection_pool.disconnect()
        _redis_clients.clear()
