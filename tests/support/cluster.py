"""Several real app processes behind a real HAProxy: ``python -m core serve --workers N``, as
`make run WORKERS=N` runs it, on free loopback ports, against the test run's servers."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from tests.support.app_server import ROOT, get
from tests.support.redis_server import free_port


def unavailable_reason() -> str | None:
    return None if shutil.which("haproxy") else "HAProxy is not installed (apt-get install haproxy)"


class Cluster:
    def __init__(self, work: Path, workers: int, env: dict[str, str]) -> None:
        self.work = work
        self.workers = workers
        self.port = free_port()
        self.env = {**os.environ, "DATA_DIR": str(work / "data"), **env}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return Path(self.env["DATA_DIR"]) / "run" / "haproxy.cfg"

    def start(self, timeout: float = 120.0) -> None:
        log = (self.work / "serve.log").open("wb")
        command = [sys.executable, "-m", "core", "serve", "--workers", str(self.workers),
                   "--port", str(self.port)]  # fmt: skip
        self.proc = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log_tail()}")
            try:
                if get(f"{self.url}/healthz/serving", timeout=2).status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not answer: {self.log_tail()}")
            time.sleep(0.2)  # polling for readiness

    def worker_ports(self) -> dict[str, int]:
        """{cookie value (app1, app2...): port}, from HAProxy's configuration."""
        found = re.findall(r"server (app\d+) 127\.0\.0\.1:(\d+)", self.config.read_text())
        return {name: int(port) for name, port in found}

    def worker_pid(self, name: str) -> int:
        port = self.worker_ports()[name]
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
        raise LookupError(f"no process listens on {port}")

    def signal_worker(self, name: str, sig: signal.Signals) -> int:
        pid = self.worker_pid(name)
        os.kill(pid, sig)
        return pid

    def wait_serving(self, name: str, timeout: float = 60.0) -> None:
        port = self.worker_ports()[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if get(f"http://127.0.0.1:{port}/healthz/serving", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)  # polling for readiness
        raise TimeoutError(f"{name} did not come back")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    child.kill()
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        logs = sorted(self.config.parent.glob("*.log"))
        for path in [self.work / "serve.log", *logs]:
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)


@contextmanager
def cluster_for(fake: Any, work: Path, workers: int = 2, **env: str) -> Iterator[Cluster]:
    """``workers`` app processes behind HAProxy answering with ``fake`` (a FakeOllama)."""
    running = Cluster(
        work,
        workers,
        {
            "LLM_BACKEND": "ollama",
            "OLLAMA_HOST": fake.url,
            "OLLAMA_MODEL": fake.model,
            "LOGIN_SLEEP_TIME": "2",
            **env,
        },
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()
