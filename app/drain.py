"""Stopping an app process without cutting anyone off: a rolling restart, a scale-down, the
end of `make run WORKERS=N`.

On the first SIGTERM the process starts draining: ``/healthz/serving`` (what the load balancer
asks) and ``/healthz`` answer 503, so new browsers go to other processes, while the replies
being streamed here and the documents being read finish; then, or after DRAIN_SECONDS, the
server's own SIGTERM handling runs (uvicorn: close connections, the lifespan's shutdown). A
second SIGTERM stops at once. Browsers still connected reconnect through the load balancer
to another process and find their conversation saved.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from app import document_jobs
from core import metrics
from core.config import get_settings

_draining = threading.Event()
POLL_SECONDS = 0.2
BALANCER_NOTICE_SECONDS = 2.5  # HAProxy checks every second and needs two failures


def draining() -> bool:
    return _draining.is_set()


def busy() -> int:
    """Replies streaming and documents being read in this process."""
    return int(metrics.LLM_ACTIVE_STREAMS._value.get()) + document_jobs.running_count()


def _wait_then(stop: Callable[[int, FrameType | None], Any], signum: int) -> None:
    deadline = time.monotonic() + get_settings().drain_seconds
    # Until the load balancer has noticed, a new browser may still land here: wait for it.
    time.sleep(min(BALANCER_NOTICE_SECONDS, get_settings().drain_seconds))
    while busy() > 0 and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    stop(signum, None)


def install() -> None:
    """Put draining in front of the server's SIGTERM handler (call from the main thread,
    after the server installed its own: the ASGI lifespan's startup)."""
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if _draining.is_set():
            previous(signum, frame)  # a second SIGTERM: stop now
            return
        _draining.set()
        metrics.DRAINING.set(1)
        threading.Thread(
            target=_wait_then, args=(previous, signum), name="drain", daemon=True
        ).start()

    signal.signal(signal.SIGTERM, on_sigterm)
