"""Reachability of the backing services, for /healthz and the status page.

A probe is a function ``() -> Check`` in ``PROBES``; features append theirs (the chat adds
``check_llm``). ``report()`` runs them in parallel and answers within ``timeout`` seconds
whatever they do: a probe still waiting on a dead host is reported as failed, and it keeps
at most one thread, which later reports share instead of starting another. So a hung
PostgreSQL, Redis or LLM server can neither hang /healthz nor pile up threads.

Failed PostgreSQL and Redis probes count in ``ledger_storage_errors_total{service}``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import asdict, dataclass
from typing import Any

from core import metrics
from core.errors import LedgerError, StorageRefused

DEFAULT_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    ms: float
    refused: bool = False  # it answers, but refuses writes (disk full, out of memory...)


Probe = Callable[[], Check]


def _timed(name: str, probe: Any) -> Check:
    started = time.perf_counter()
    refused = False
    try:
        detail = probe() or "ok"
        ok = True
    except LedgerError as exc:
        detail, ok, refused = str(exc), False, isinstance(exc, StorageRefused)
    except Exception as exc:  # a health probe reports, it never raises
        detail, ok = f"{type(exc).__name__}: {exc}", False
    ms = round((time.perf_counter() - started) * 1000, 1)
    return Check(name, ok, str(detail), ms, refused)


def check_postgres() -> Check:
    from core import db, services

    def probe() -> None:
        with metrics.storage_errors_counted("postgres"):
            services.ping_postgres(db.get_engine())

    return _timed("postgres", probe)


def check_redis() -> Check:
    from core import services

    def probe() -> None:
        with metrics.storage_errors_counted("redis"):
            services.ping_redis(services.redis_client())

    return _timed("redis", probe)


PROBES: list[Probe] = [check_postgres, check_redis]


def probe_name(probe: Probe) -> str:
    """The name a probe reports under: ``check_llm`` -> ``llm``."""
    return getattr(probe, "__name__", "probe").removeprefix("check_")


_lock = threading.Lock()
_in_flight: dict[Probe, Future[Check]] = {}


def _start(probe: Probe) -> Future[Check]:
    """Run ``probe`` on its own thread, or join the run of it that has not finished yet."""
    with _lock:
        running = _in_flight.get(probe)
        if running is not None and not running.done():
            return running
        future: Future[Check] = Future()
        _in_flight[probe] = future

    def run() -> None:
        try:
            future.set_result(probe())
        except BaseException as exc:  # reported by report(); a probe thread never dies silently
            future.set_exception(exc)

    threading.Thread(target=run, name=f"health-{probe_name(probe)}", daemon=True).start()
    return future


def _outcome(probe: Probe, future: Future[Check], timeout: float) -> Check:
    if not future.done():
        return Check(probe_name(probe), False, f"no answer within {timeout:g} s", timeout * 1000)
    exc = future.exception()
    if exc is not None:
        return Check(probe_name(probe), False, f"{type(exc).__name__}: {exc}", 0.0)
    return future.result()


def report(timeout: float = DEFAULT_TIMEOUT_SECONDS) -> tuple[bool, dict[str, Any]]:
    """(all ok, JSON-ready body) for /healthz, within about ``timeout`` seconds."""
    started = [(probe, _start(probe)) for probe in PROBES]
    wait([future for _, future in started], timeout=timeout)
    checks = [_outcome(probe, future, timeout) for probe, future in started]
    healthy = all(c.ok for c in checks)
    return healthy, {
        "status": "ok" if healthy else "unavailable",
        "checks": {c.name: asdict(c) for c in checks},
    }


def check_llm() -> Check:
    """Which backend serves chats and whether it answers (the embedded one: file loads)."""
    from core import llm

    def probe() -> str:
        return llm.get_backend().health()

    return _timed("llm", probe)


PROBES.append(check_llm)
