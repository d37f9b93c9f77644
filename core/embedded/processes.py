"""Processes the embedded servers depend on: is a pid (still) the server we started, and a
lock file shared by every process that uses one DATA_DIR."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

import psutil


def process_alive(pid: int, started: float | None = None, *, name: str | None = None) -> bool:
    """True if ``pid`` runs (a zombie is dead) and, when given, started at ``started`` and
    its program name starts with ``name`` (a recycled pid is not our server).

    A server killed with SIGKILL stays a zombie until its parent (often PID 1 in a container)
    reaps it; counting it as alive is what made attaching fail for a second or two.
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if name is not None and not proc.name().startswith(name):
            return False
        return started is None or abs(proc.create_time() - started) < 0.01
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False


def process_started(pid: int) -> float:
    return float(psutil.Process(pid).create_time())


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
