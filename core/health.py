"""Reachability of the backing services, for /healthz and the status page."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from core.errors import LedgerError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    ms: float


def _timed(name: str, probe: Any) -> Check:
    started = time.perf_counter()
    try:
        detail = probe() or "ok"
        ok = True
    except LedgerError as exc:
        detail, ok = str(exc), False
    except Exception as exc:  # a health probe reports, it never raises
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return Check(name, ok, str(detail), round((time.perf_counter() - started) * 1000, 1))


def check_postgres() -> Check:
    from core import db, services

    return _timed("postgres", lambda: services.ping_postgres(db.get_engine()))


def check_redis() -> Check:
    from core import services

    return _timed("redis", lambda: services.ping_redis(services.redis_client()))


PROBES = [check_postgres, check_redis]


def report() -> tuple[bool, dict[str, Any]]:
    """(all ok, JSON-ready body) for /healthz."""
    checks = [probe() for probe in PROBES]
    healthy = all(c.ok for c in checks)
    return healthy, {
        "status": "ok" if healthy else "unavailable",
        "checks": {c.name: asdict(c) for c in checks},
    }
