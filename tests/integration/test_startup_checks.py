"""``core.startup.check_services()``: the one-line problems the app shows instead of pages."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from core import db, services, startup
from core.accounts import Identity
from core.config import get_settings
from tests.conftest import ROOT, _libpq_to_url

Configure = Callable[..., None]


@pytest.fixture
def configure(services_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Configure]:
    """Change settings for one test; the test servers come back afterwards."""

    def apply(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        db.reset()
        services.reset()

    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()
    db.reset()
    services.reset()


def dead_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_problem_when_everything_answers(services_env: None) -> None:
    assert startup.check_services() == []


def test_a_postgres_that_is_down_is_one_line(configure: Configure) -> None:
    port = dead_port()
    configure(DATABASE_URL=f"postgresql://ledger:pw-s3cret@127.0.0.1:{port}/ledger")
    (problem,) = startup.check_services()
    assert problem.startswith("PostgreSQL is not reachable at postgresql+psycopg://ledger:***@")
    assert "s3cret" not in problem


def test_a_redis_that_is_down_is_one_line(configure: Configure) -> None:
    port = dead_port()
    configure(REDIS_URL=f"redis://127.0.0.1:{port}/0")
    (problem,) = startup.check_services()
    assert problem.startswith(f"Redis is not reachable at redis://127.0.0.1:{port}/0")


def test_both_down_gives_two_lines(configure: Configure) -> None:
    port = dead_port()
    configure(
        DATABASE_URL=f"postgresql://127.0.0.1:{port}/ledger",
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
    )
    problems = startup.check_services()
    assert [p.split()[0] for p in problems] == ["PostgreSQL", "Redis"]


def test_invalid_settings_are_the_only_line(configure: Configure) -> None:
    configure(LLM_BACKEND="foo")
    assert startup.check_services() == [
        "Invalid configuration: LLM_BACKEND='foo': Input should be 'auto', 'ollama' or 'llamacpp'."
    ]


def test_a_database_that_was_never_migrated_says_how_to_fix_it(
    configure: Configure, pg_admin_url: str
) -> None:
    name = f"ledger_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        configure(DATABASE_URL=_libpq_to_url(pg_admin_url, name))
        (problem,) = startup.check_services()
        assert "schema is at nothing (empty database)" in problem
        assert "python -m core migrate" in problem
    finally:
        db.reset()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def status_page() -> AppTest:
    """The status page as an administrator opens it (it refuses anyone else)."""
    at = AppTest.from_file(str(ROOT / "pages" / "status.py"))
    at.session_state["identity"] = Identity(uuid.uuid4(), "root", "Root", "admin")
    return at


def test_the_status_page_shows_the_problem_lines(configure: Configure) -> None:
    port = dead_port()
    configure(REDIS_URL=f"redis://127.0.0.1:{port}/0")
    at = status_page().run(timeout=30)
    assert not at.exception
    (error,) = at.error
    assert error.value.startswith("Redis is not reachable")
    assert not at.success


def test_the_status_page_says_all_is_well(services_env: None) -> None:
    at = status_page().run(timeout=30)
    assert not at.exception and not at.error
    assert "schema is up to date" in at.success[0].value
    assert "**PostgreSQL** (configured)" in at.markdown[0].value
