"""The embedded PostgreSQL 16 (pgserver) under ``DATA_DIR/postgres``.

A second process (CLI, notebook, another ``make run``) that asks for the same DATA_DIR attaches
to the server already running instead of starting a rival; the last process to leave stops it
and the data stays on disk. pgserver keeps the list of processes using the server in
``.handle_pids.json``; a process killed with SIGKILL never removes itself, so every start and
every exit first drops the entries of processes that are gone (otherwise the server would never
be stopped again). A folder that is not a PostgreSQL data folder, or a damaged one, is refused
before anything runs in it, and left exactly as it was.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import subprocess
import threading
import warnings
from pathlib import Path
from typing import Any

from core.datadir import prepare_data_dir, real_path
from core.embedded.processes import process_alive
from core.errors import DataDirectoryError, ServiceUnavailable, first_line
from core.urls import sqlalchemy_url

EMBEDDED_DB_NAME = "ledger"
PG_MAJOR = "16"

_lock = threading.RLock()
_servers: dict[Path, EmbeddedPostgres] = {}


def runtime_dir() -> None:
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
    alive = [pid for pid in pids if process_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _postmaster_running(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    return process_alive(pid, name="postgres")


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


class EmbeddedPostgres:
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


def _open_postgres(pgdata: Path) -> EmbeddedPostgres:
    runtime_dir()
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
    handle = EmbeddedPostgres(server)
    # Runs before pgserver's own exit hook (atexit is LIFO), which it replaces.
    atexit.register(handle.leave)
    return handle


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL under ``data_dir``; return its URL."""
    handle = _servers.get(real_path(data_dir) / "postgres")
    if handle is not None:  # opened by this process: DATA_DIR was checked then
        return handle.url()
    data_dir = prepare_data_dir(data_dir)
    pgdata = data_dir / "postgres"
    with _lock:
        handle = _servers.get(pgdata)
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
            _servers[pgdata] = handle
    return handle.url()


def embedded_postgres_pid(data_dir: Path) -> int | None:
    """The postmaster's pid when this process uses the embedded server under ``data_dir``."""
    handle = _servers.get(real_path(data_dir) / "postgres")
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


def leave_all() -> None:
    """Count this process out of every embedded PostgreSQL it uses (the last one out stops it)."""
    with _lock:
        for handle in list(_servers.values()):
            handle.leave()
        _servers.clear()
