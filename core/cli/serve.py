"""``serve``: several app processes behind HAProxy on one port (`make run WORKERS=N`).

Each worker is ``streamlit run app/main.py`` on a loopback port of its own; HAProxy listens on
the usual port with cookie affinity (``core.balancer``). All of them share PostgreSQL and Redis
(the embedded servers, held open by this process for as long as it runs, or the configured
ones). A worker that exits is started again on its port. SIGHUP restarts the workers one at a
time (each drains first: its streams finish while new browsers go to the others); SIGINT or
SIGTERM drains them all and stops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

from sqlalchemy import text

from core import balancer, database, datadir, readiness, services
from core.config import get_settings
from core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 120.0
RESERVED_CONNECTIONS = 5  # this process, a notebook, the CLI


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def worker_env(number: int) -> dict[str, str]:
    """A worker's environment: this one, plus HAProxy (on loopback) as a trusted proxy, so the
    X-Forwarded-For it adds names each browser's address to the login limits."""
    trusted = [p for p in os.environ.get("TRUSTED_PROXIES", "").split(",") if p.strip()]
    return {
        **os.environ,
        "LEDGER_WORKER": str(number),
        "TRUSTED_PROXIES": ",".join([*trusted, "127.0.0.1/32"]),
    }


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback, ours)
            return bool(resp.status == 200)
    except OSError:
        return False


class Worker:
    def __init__(self, number: int, port: int, log_dir: Path) -> None:
        self.number, self.port = number, port
        self.log = log_dir / f"worker-{number}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"),
            "--server.port", str(self.port), "--server.address", "127.0.0.1",
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        with self.log.open("ab") as out:
            env = worker_env(self.number)
            self.proc = subprocess.Popen(  # noqa: S603 (our own interpreter and app)
                command, cwd=ROOT, env=env, stdout=out, stderr=out
            )

    def wait_ready(self, timeout: float = START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not _answers(f"http://127.0.0.1:{self.port}{balancer.HEALTH_PATH}"):
            if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                raise ConfigError(f"app worker {self.number} did not start; see {self.log}")
            time.sleep(0.2)  # polling for readiness

    def drain(self, timeout: float) -> None:
        """SIGTERM (the worker finishes its streams, then exits), SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None


class Cluster:
    def __init__(self, workers: int, host: str, port: int) -> None:
        settings = get_settings()
        run_dir = datadir.real_path(settings.data_dir) / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.config = run_dir / "haproxy.cfg"
        self.workers = [Worker(n, _free_port("127.0.0.1"), run_dir) for n in range(1, workers + 1)]
        self.bind = f"{host}:{port}"
        self.drain_seconds = settings.drain_seconds + 10
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.rolling = False

    def run(self) -> int:
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            raise ConfigError(
                "WORKERS needs HAProxy in front of the app processes: install it "
                "(Debian/Ubuntu: apt-get install haproxy; macOS: brew install haproxy)"
            )
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            worker.wait_ready()
        servers = [("127.0.0.1", w.port) for w in self.workers]
        self.config.write_text(balancer.local_config(self.bind, servers))
        checking = [haproxy, "-c", "-q", "-f", str(self.config)]
        check = subprocess.run(checking, check=False)  # noqa: S603 (HAProxy from PATH)
        if check.returncode != 0:
            raise ConfigError(f"HAProxy refused {self.config}")
        serving = [haproxy, "-db", "-f", str(self.config)]
        self.haproxy = subprocess.Popen(serving)  # noqa: S603 (HAProxy from PATH, our config)
        print(f"Ledger: {len(self.workers)} app processes behind HAProxy at http://{self.bind}")
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._roll)
        try:
            self._supervise()
        finally:
            self._shutdown()
        return 0

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _roll(self, signum: int, frame: FrameType | None) -> None:
        self.rolling = True

    def _supervise(self) -> None:
        while not self.stopping:
            if self.haproxy is not None and self.haproxy.poll() is not None:
                print("HAProxy stopped; stopping the app processes", file=sys.stderr)
                return
            if self.rolling:
                self.rolling = False
                self._rolling_restart()
            for worker in self.workers:
                if worker.exited and not self.stopping:
                    print(f"app worker {worker.number} exited; starting it again", file=sys.stderr)
                    worker.start()
            time.sleep(0.5)

    def _rolling_restart(self) -> None:
        for worker in self.workers:
            if self.stopping:
                return
            worker.drain(self.drain_seconds)
            worker.start()
            worker.wait_ready()

    def _shutdown(self) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.terminate()  # all drain at once
        deadline = time.monotonic() + self.drain_seconds
        for worker in self.workers:
            worker.drain(max(1.0, deadline - time.monotonic()))
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(10)


def _check_connections(workers: int) -> None:
    """Warn when the workers' pools together could ask PostgreSQL for more connections than
    it allows (each process keeps up to POOL_SIZE + MAX_OVERFLOW): under load the last ones
    would be refused, and turns would fail with "too many clients"."""
    with database.session_scope() as db:
        allowed = int(db.scalar(text("SHOW max_connections")) or 0)
    wanted = workers * (database.POOL_SIZE + database.MAX_OVERFLOW) + RESERVED_CONNECTIONS
    if allowed and wanted > allowed:
        print(
            f"warning: {workers} app processes may open up to {wanted} PostgreSQL connections, "
            f"and this server allows {allowed} (max_connections): under heavy load some turns "
            "would be refused. Use fewer workers, or raise max_connections.",
            file=sys.stderr,
        )


def _serve(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ConfigError("WORKERS must be 1 or more")
    readiness.require_storage()  # the embedded servers stay up while this process runs
    _check_connections(args.workers)
    try:
        return Cluster(args.workers, args.host, args.port).run()
    finally:
        database.reset()
        services.shutdown()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="app processes behind HAProxy (make run WORKERS=N)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8501)
    p.set_defaults(handler=_serve)
