"""One answer to "can Ledger serve?", for the router, the Status page, /healthz and the CLI.

Three questions, each answered once here:

- **Does each service answer?** A probe is a function ``() -> Check`` in ``PROBES`` (PostgreSQL,
  Redis, the LLM). ``report()`` runs them in parallel for /healthz and answers within
  ``timeout`` seconds whatever they do: a probe still waiting on a dead host is reported as
  failed, and it keeps at most one thread, which later reports share instead of starting
  another. So a hung server can neither hang /healthz nor pile up threads. Failed PostgreSQL
  and Redis probes count in ``ledger_storage_errors_total{service}``.
- **Is the schema current?** ``schema_problem()`` / ``require_schema()``.
- **What to tell the user?** ``blocking_problem()`` is the router's one line when no page can
  open (settings, DATA_DIR, storage down or refusing writes); ``problems()`` lists everything
  that stops the app from working, for the Status page and ``python -m core check``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from core import database, metrics, migrate, services
from core.config import Settings, get_settings
from core.errors import (
    ConfigError,
    DataDirectoryError,
    LedgerError,
    SchemaError,
    ServiceUnavailable,
    StorageRefused,
)

DEFAULT_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    ms: float
    refused: bool = False  # it answers, but refuses writes (disk full, out of memory...)


Probe = Callable[[], Check]


def _timed(name: str, probe: Callable[[], str | None]) -> Check:
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
    def probe() -> None:
        with metrics.storage_errors_counted("postgres"):
            services.ping_postgres(database.get_engine())

    return _timed("postgres", probe)


def check_redis() -> Check:
    def probe() -> None:
        with metrics.storage_errors_counted("redis"):
            services.ping_redis(services.redis_client())

    return _timed("redis", probe)


def check_llm() -> Check:
    """Which backend serves chats and whether it answers (the embedded one: file loads)."""
    # Imported here, not above: the ollama client and httpx cost `make run`'s prepare step
    # (which asks only about storage) a quarter of a second on every start. Not a cycle:
    # core.llm imports nothing of readiness (tests/unit/test_imports.py walks both).
    from core import llm

    return _timed("llm", lambda: llm.get_backend().health())


PROBES: list[Probe] = [check_postgres, check_redis, check_llm]


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


def run_probes(timeout: float = DEFAULT_TIMEOUT_SECONDS) -> list[Check]:
    """Every probe's check, within about ``timeout`` seconds (details included: Status page)."""
    started = [(probe, _start(probe)) for probe in PROBES]
    wait([future for _, future in started], timeout=timeout)
    return [_outcome(probe, future, timeout) for probe, future in started]


def _state(check: Check) -> str:
    if check.ok:
        return "ok"
    if check.refused:
        return "refused"
    return "timeout" if check.detail.startswith("no answer within") else "unavailable"


def report(timeout: float = DEFAULT_TIMEOUT_SECONDS) -> tuple[bool, dict[str, Any]]:
    """(all ok, JSON-ready body) for /healthz, within about ``timeout`` seconds.

    /healthz answers anyone, so the body says only the state of each service (ok, unavailable,
    refused, timeout) and how long its probe took: no URL, no error text, no exception name.
    The details are for administrators, on the Status page (``run_probes``).
    """
    checks = run_probes(timeout)
    healthy = all(c.ok for c in checks)
    return healthy, {
        "status": "ok" if healthy else "unavailable",
        "checks": {c.name: {"state": _state(c), "ms": c.ms} for c in checks},
    }


# --- the schema ----------------------------------------------------------------------------


def schema_problem(engine: Engine) -> str | None:
    """Why the database schema is not the one this code works with, or None when it is."""
    current, wanted = migrate.current(engine), migrate.head()
    if current == wanted:
        return None
    return (
        f"The database schema is at {current or 'nothing (empty database)'}, this version "
        f"needs {wanted}: run `python -m core migrate` (make run does it)."
    )


def require_schema(engine: Engine) -> None:
    """PostgreSQL answers and its schema is current, or ``ServiceUnavailable`` / ``SchemaError``."""
    services.ping_postgres(engine)
    problem = schema_problem(engine)
    if problem:
        raise SchemaError(problem)


# --- what to tell the user -----------------------------------------------------------------


def open_embedded(settings: Settings) -> None:
    """Start (or attach to) the embedded servers the settings ask for, so that a DATA_DIR that
    is not Ledger's, or is damaged, is reported as that: there is no service to start and no
    URL to fix. Any other failure is left to the probes, which report every service."""
    with contextlib.suppress(ServiceUnavailable):
        if not settings.database_url:
            database.get_engine()
        if not settings.redis_url:
            services.redis_client(settings)


def blocking_problem() -> str | None:
    """Why no page can open (bad settings, an unusable DATA_DIR, PostgreSQL or Redis down or
    refusing writes), in one line for the page that replaces the app; None when all answer."""
    try:
        open_embedded(get_settings())
    except (ConfigError, DataDirectoryError) as exc:
        return str(exc)
    failed = [check for check in (check_postgres(), check_redis()) if not check.ok]
    if not failed:
        return None
    lines = "; ".join(f"{check.name}: {check.detail.rstrip('.')}" for check in failed)
    if all(check.refused for check in failed):
        return (
            f"Ledger's storage answers but refuses to store anything, so no page can open. "
            f"{lines}. This page comes back by itself when it accepts writes again."
        )
    return (
        f"Ledger cannot reach its storage, so no page can open. {lines}. Start the service "
        "(or fix DATABASE_URL / REDIS_URL): this page comes back by itself when it answers."
    )


def _said(exc: Exception) -> str:
    explained = services.explain(exc)
    if explained is None:
        raise exc  # a bug keeps its traceback
    return str(explained)


def problems() -> list[str]:
    """One line per problem that stops the app from working; empty when all is well.

    Checks the settings, that PostgreSQL and Redis answer, and that the database schema is the
    one this code expects. Starts the embedded servers if they are the configured ones (as the
    app would on its first query). Never raises for a problem a person can fix.
    """
    try:
        settings = get_settings()
    except LedgerError as exc:
        return [str(exc)]
    found: list[str] = []
    try:
        engine = database.get_engine()
        services.ping_postgres(engine)
        problem = schema_problem(engine)
        if problem:
            found.append(problem)
    except Exception as exc:
        found.append(_said(exc))
    try:
        services.ping_redis(services.redis_client(settings))
    except Exception as exc:
        found.append(_said(exc))
    return found


def require_storage(settings: Settings | None = None) -> list[services.ServiceInfo]:
    """PostgreSQL and Redis answer (else the first failure is raised, one line); returns the
    services in use, for the CLI's ``check`` and ``prepare``."""
    settings = settings or get_settings()
    services.ping_postgres(database.get_engine())
    services.ping_redis(services.redis_client(settings))
    return services.describe(settings)
