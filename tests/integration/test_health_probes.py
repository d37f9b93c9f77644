"""The PostgreSQL and Redis probes behind /healthz, against real servers and dead ports."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from core import database, readiness, services
from core.config import get_settings


def storage_errors(service: str) -> float:
    return REGISTRY.get_sample_value("ledger_storage_errors_total", {"service": service}) or 0.0


@pytest.fixture
def dead_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pointed_elsewhere(services_env: None) -> Iterator[pytest.MonkeyPatch]:
    """Change a URL for one test; the session's settings and clients come back after it."""
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
    get_settings.cache_clear()
    database.reset()
    services.reset()


def _repoint(mp: pytest.MonkeyPatch, name: str, url: str) -> None:
    mp.setenv(name, url)
    get_settings.cache_clear()
    database.reset()
    services.reset()


def test_postgres_and_redis_probes_pass_against_the_test_servers(services_env: None) -> None:
    pg, rd = readiness.check_postgres(), readiness.check_redis()
    assert (pg.name, pg.ok, pg.detail) == ("postgres", True, "ok")
    assert (rd.name, rd.ok, rd.detail) == ("redis", True, "ok")


def test_unreachable_redis_fails_its_probe_and_counts_a_storage_error(
    pointed_elsewhere: pytest.MonkeyPatch, dead_port: int
) -> None:
    _repoint(pointed_elsewhere, "REDIS_URL", f"redis://127.0.0.1:{dead_port}/0")
    before = storage_errors("redis")
    check = readiness.check_redis()
    assert not check.ok
    assert check.detail.startswith(f"Redis is not reachable at redis://127.0.0.1:{dead_port}/0")
    assert storage_errors("redis") == before + 1
    assert readiness.check_postgres().ok


def test_unreachable_postgres_fails_its_probe_without_showing_the_password(
    pointed_elsewhere: pytest.MonkeyPatch, dead_port: int
) -> None:
    _repoint(
        pointed_elsewhere,
        "DATABASE_URL",
        f"postgresql://ledger:s3cret-pw@127.0.0.1:{dead_port}/ledger",
    )
    before = storage_errors("postgres")
    check = readiness.check_postgres()
    assert not check.ok
    assert check.detail.startswith(
        "PostgreSQL is not reachable at postgresql+psycopg://ledger:***@"
    )
    assert "s3cret-pw" not in check.detail
    assert storage_errors("postgres") == before + 1
