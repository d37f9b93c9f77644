"""Run the real app (`streamlit run app/main.py`) on a free loopback port, as a user would."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    seconds: float

    @property
    def text(self) -> str:
        return self.body.decode()


def get(url: str, *, accept: str | None = None, timeout: float = 15.0) -> Reply:
    """GET without raising on 4xx/5xx: tests look at the status."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"tests only talk to loopback servers, not {url}")
    headers = {"Accept": accept} if accept else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (checked above)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 (loopback)
            body, status, ctype = resp.read(), resp.status, resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        body, status, ctype = exc.read(), exc.code, exc.headers.get("Content-Type", "")
    return Reply(status, ctype, body, time.perf_counter() - started)


class AppServer:
    """The app in its own process; ``env`` is added to the current environment."""

    def __init__(self, env: dict[str, str], log_path: Path, root: Path = ROOT) -> None:
        self.root = root
        self.port = free_port()
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(self.root / "app" / "main.py"),
                "--server.port",
                str(self.port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--server.fileWatcherType",
                "none",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=self.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"the app exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if get(f"{self.url}/_stcore/health", timeout=2).status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not answer in {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.1)  # polling for readiness, not waiting for time to pass

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def app_for(fake: Any, work: Path, **env: str) -> Iterator[AppServer]:
    """The app answering with ``fake`` (a FakeOllama) for the model, its own DATA_DIR and log
    in ``work``, the cookie wait a browser needs, and ``env`` on top; stopped afterwards."""
    server = AppServer(
        {
            "DATA_DIR": str(work / "data"),
            "LLM_BACKEND": "ollama",
            "OLLAMA_HOST": fake.url,
            "OLLAMA_MODEL": fake.model,
            "LOGIN_SLEEP_TIME": "2",
            **env,
        },
        log_path=work / "app.log",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
