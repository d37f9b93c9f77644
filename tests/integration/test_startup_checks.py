"""``core.readiness.problems()``: the one-line problems the app shows instead of pages."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from core import database, readiness, services
from core.accounts import Identity
from core.config import get_settings
from tests.conftest import ROOT, _libpq_to_url
from tests.support import router
from tests.support.bad_urls import (
    SECRET,
    redis_with_password,
    unknown_database,
    unknown_role,
    wrong_password,
)
from tests.support.redis_server import RedisServer

Configure = Callable[..., None]


@pytest.fixture
def configure(services_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Configure]:
    """Change settings for one test; the test servers come back afterwards."""

    def apply(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        database.reset()
        services.reset()

    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()
    database.reset()
    services.reset()


def dead_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_problem_when_everything_answers(services_env: None) -> None:
    assert readiness.problems() == []


def test_a_postgres_that_is_down_is_one_line(configure: Configure) -> None:
    port = dead_port()
    configure(DATABASE_URL=f"postgresql://ledger:pw-s3cret@127.0.0.1:{port}/ledger")
    (problem,) = readiness.problems()
    assert problem.startswith("PostgreSQL is not reachable at postgresql+psycopg://ledger:***@")
    assert "s3cret" not in problem


def test_a_redis_that_is_down_is_one_line(configure: Configure) -> None:
    port = dead_port()
    configure(REDIS_URL=f"redis://127.0.0.1:{port}/0")
    (problem,) = readiness.problems()
    assert problem.startswith(f"Redis is not reachable at redis://127.0.0.1:{port}/0")


def test_both_down_gives_two_lines(configure: Configure) -> None:
    port = dead_port()
    configure(
        DATABASE_URL=f"postgresql://127.0.0.1:{port}/ledger",
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
    )
    problems = readiness.problems()
    assert [p.split()[0] for p in problems] == ["PostgreSQL", "Redis"]


def test_invalid_settings_are_the_only_line(configure: Configure) -> None:
    configure(LLM_BACKEND="foo")
    assert readiness.problems() == [
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
        (problem,) = readiness.problems()
        assert "schema is at nothing (empty database)" in problem
        assert "python -m core migrate" in problem
    finally:
        database.reset()
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


# --- the app's first page (through the router) when a server refuses the URL ---------------


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_with_password(tmp_path_factory.mktemp("locked-redis")) as server:
        yield server


def first_page_error(*, hidden: str = SECRET) -> str:
    """The one error the router shows instead of any page: no traceback, no login form, and
    the password ``hidden`` nowhere on the page. Returned without escape_markdown's backslashes."""
    at = router.browser()
    assert not at.exception, [e.value for e in at.exception]
    (message,) = router.errors(at)
    assert not at.text_input
    shown = [str(e.value) for e in [*at.error, *at.markdown, *at.caption]]
    assert all(hidden not in text.replace("\\", "") for text in shown)
    return message.replace("\\", "")


def test_a_postgres_role_that_does_not_exist_is_the_first_page(
    configure: Configure, pg_admin_url: str
) -> None:
    url, role = unknown_role(pg_admin_url)
    configure(DATABASE_URL=url)
    message = first_page_error()
    assert "PostgreSQL is not reachable at postgresql+psycopg://" in message
    assert f"{role}:***@" in message and f'"{role}"' in message


def test_a_database_that_does_not_exist_is_the_first_page(
    configure: Configure, pg_admin_url: str
) -> None:
    url, database, password = unknown_database(pg_admin_url)
    configure(DATABASE_URL=url)
    message = first_page_error(hidden=password)
    assert f'database "{database}" does not exist' in message and ":***@" in message


def test_a_redis_password_that_is_missing_is_the_first_page(
    configure: Configure, locked_redis: RedisServer
) -> None:
    configure(REDIS_URL=locked_redis.url)
    message = first_page_error()
    assert f"Redis is not reachable at {locked_redis.url}: it requires a password" in message


def test_a_wrong_redis_password_is_the_first_page_hidden(
    configure: Configure, locked_redis: RedisServer
) -> None:
    configure(REDIS_URL=wrong_password(locked_redis))
    message = first_page_error()
    assert f"redis://:***@127.0.0.1:{locked_redis.port}/0: it refused the password" in message


# --- a DATA_DIR that is not Ledger's ---------------------------------------------------------


def test_a_foreign_data_dir_is_the_first_page_and_is_left_alone(
    configure: Configure, tmp_path: Path
) -> None:
    data = tmp_path / "someone-elses"
    data.mkdir()
    (data / "quarterly-report.xlsx").write_bytes(b"not ours")
    configure(DATA_DIR=str(data), DATABASE_URL="", REDIS_URL="")
    message = first_page_error()
    assert message.startswith(f"DATA_DIR {data} is not a Ledger data folder")
    assert "nothing was changed" in message
    assert "cannot reach its storage" not in message and "DATABASE_URL" not in message
    assert [p.name for p in data.iterdir()] == ["quarterly-report.xlsx"]


def test_a_postgres_folder_of_another_version_is_the_first_page(
    configure: Configure, tmp_path: Path, redis_url: str
) -> None:
    data = tmp_path / "data"
    (data / "postgres").mkdir(parents=True)
    (data / ".ledger-data").write_text("")
    (data / "postgres" / "PG_VERSION").write_text("13\n")
    configure(DATA_DIR=str(data), DATABASE_URL="", REDIS_URL=redis_url)
    message = first_page_error()
    assert message.startswith(f"{data / 'postgres'} was made by PostgreSQL '13'")
    assert "cannot reach its storage" not in message
    assert (data / "postgres" / "PG_VERSION").read_text() == "13\n"
