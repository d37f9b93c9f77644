"""A PostgreSQL 16 server the test owns (pgserver's binaries), on a loopback TCP port, that the
test can stop, start, restart or crash while the app uses it.

The port stays the same across restarts, so the app's DATABASE_URL stays valid. As root,
PostgreSQL runs as the system user ``pgserver`` (PostgreSQL refuses to run as root), like the
embedded server does; the folder lives under /tmp (pytest's tmp_path is closed to other users).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.support.redis_server import free_port


def _bin(name: str) -> str:
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


class PostgresServer:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="ledger-own-pg-"))
        self.pgdata = self.base / "pgdata"
        self.port = free_port()
        self.user: str | None = None
        from core.embedded.postgres import runtime_dir

        runtime_dir()  # pgserver's modules want XDG_RUNTIME_DIR
        if os.geteuid() == 0:
            from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists("pgserver")
            self.user = "pgserver"
            self.base.chmod(0o755)
            ensure_prefix_permissions(self.base)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def libpq_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            list(args), check=True, capture_output=True, text=True, timeout=timeout, user=self.user
        )

    def init(self) -> PostgresServer:
        self.pgdata.mkdir()
        if self.user:
            shutil.chown(self.pgdata, self.user, self.user)
        self._run(
            _bin("initdb"), "-D", str(self.pgdata), "--auth=trust", "--encoding=utf8",
            "-U", "postgres", "--no-sync",
        )  # fmt: skip
        return self

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.pgdata} -c fsync=off"
        self._run(
            _bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-t", "30", "-o", options,
            "-l", str(self.pgdata / "log"), "start",
        )  # fmt: skip
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        """``fast``: disconnect clients and shut down cleanly; ``immediate``: like a crash
        (recovery runs at the next start)."""
        self._run(_bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        return None

    def kill(self) -> None:
        """SIGKILL the postmaster, as the OOM killer would."""
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGKILL)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.libpq_url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # polling for readiness, not waiting for time to pass

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
