"""A wrong URL, a server that is down, or an invalid setting: the commands `make run` and an
operator use stop with one line that names the service (or variable), exit status 2, no
traceback, no secret."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bad_urls import (
    SECRET,
    redis_with_password,
    unknown_database,
    unknown_role,
    wrong_password,
)
from tests.support.redis_server import RedisServer

COMMANDS = ["check", "migrate", "prepare"]


def free_port() -> int:
    """A local port nothing listens on (a server that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_core(command: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    full.update(DATA_DIR=str(tmp_path / "data"), **env)
    return subprocess.run(
        [sys.executable, "-m", "core", command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=full,
        timeout=120,
    )


def assert_one_clear_line(
    result: subprocess.CompletedProcess[str], *expected: str, secret: str = SECRET
) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("error: ")
    for fragment in expected:
        assert fragment in line
    assert secret not in result.stderr + result.stdout
    return line


DOWN = free_port()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"postgresql://ledger:{SECRET}@127.0.0.1:{DOWN}/ledger",
            ["PostgreSQL", f"ledger:***@127.0.0.1:{DOWN}/ledger", "Connection refused"],
        ),
        (
            f"postgresql://ledger:{SECRET}@127.0.0.1:54x2/ledger",
            ["DATABASE_URL=", "ledger:***@", "the port must be a number"],
        ),
    ],
    ids=["down", "bad-port"],
)
def test_a_bad_database_url_stops_every_command_with_one_line(
    tmp_path: Path, command: str, url: str, expected: list[str]
) -> None:
    result = run_core(command, tmp_path, DATABASE_URL=url, REDIS_URL="redis://127.0.0.1:1/0")
    assert_one_clear_line(result, *expected)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"postgresql://127.0.0.1:{DOWN}/ledger?password={SECRET}",
            ["PostgreSQL", "password=***", "Connection refused"],
        ),
        (f"postgresql://ledger:{SECRET}@db.invalid/ledger", ["PostgreSQL", "db.invalid"]),
        (f"postgresql+asyncpg://ledger:{SECRET}@db/ledger", ["DATABASE_URL=", "asyncpg"]),
    ],
    ids=["query-password", "unknown-host", "other-driver"],
)
def test_other_bad_database_urls_are_explained(
    tmp_path: Path, url: str, expected: list[str]
) -> None:
    result = run_core("check", tmp_path, DATABASE_URL=url, REDIS_URL="redis://127.0.0.1:1/0")
    assert_one_clear_line(result, *expected)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_postgres_role_that_does_not_exist_stops_every_command_with_one_line(
    tmp_path: Path, pg_admin_url: str, command: str
) -> None:
    url, role = unknown_role(pg_admin_url)
    result = run_core(command, tmp_path, DATABASE_URL=url, REDIS_URL="redis://127.0.0.1:1/0")
    line = assert_one_clear_line(result, "PostgreSQL is not reachable", f"{role}:***@", f'"{role}"')
    # A server that asks for passwords does not say whether the role exists.
    assert "does not exist" in line or "password authentication failed" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_database_that_does_not_exist_stops_every_command_with_one_line(
    tmp_path: Path, pg_admin_url: str, command: str
) -> None:
    url, database, password = unknown_database(pg_admin_url)
    result = run_core(command, tmp_path, DATABASE_URL=url, REDIS_URL="redis://127.0.0.1:1/0")
    assert_one_clear_line(
        result,
        "PostgreSQL is not reachable",
        ":***@",
        f"/{database}",
        f'database "{database}" does not exist',
        secret=password,
    )


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_with_password(tmp_path_factory.mktemp("locked-redis")) as server:
        yield server


@pytest.mark.parametrize("command", ["check", "prepare"])  # migrate needs no Redis
def test_a_redis_that_wants_a_password_and_gets_none_says_so(
    tmp_path: Path, pg_url: str, locked_redis: RedisServer, command: str
) -> None:
    result = run_core(command, tmp_path, DATABASE_URL=pg_url, REDIS_URL=locked_redis.url)
    assert_one_clear_line(
        result, f"Redis is not reachable at {locked_redis.url}", "requires a password"
    )


@pytest.mark.parametrize("command", ["check", "prepare"])
def test_a_wrong_redis_password_is_refused_in_one_line_without_showing_it(
    tmp_path: Path, pg_url: str, locked_redis: RedisServer, command: str
) -> None:
    result = run_core(
        command, tmp_path, DATABASE_URL=pg_url, REDIS_URL=wrong_password(locked_redis)
    )
    assert_one_clear_line(
        result,
        f"Redis is not reachable at redis://:***@127.0.0.1:{locked_redis.port}/0",
        "refused the password",
    )


@pytest.mark.parametrize("command", ["check", "prepare"])  # migrate needs no Redis
def test_a_redis_that_is_down_stops_with_one_line(
    tmp_path: Path, pg_url: str, command: str
) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{DOWN}/0"
    result = run_core(command, tmp_path, DATABASE_URL=pg_url, REDIS_URL=url)
    assert_one_clear_line(result, "Redis", f"redis://:***@127.0.0.1:{DOWN}/0", "refused")


def test_a_missing_redis_socket_is_explained(tmp_path: Path, pg_url: str) -> None:
    url = "unix:///nonexistent/redis.sock"
    result = run_core("check", tmp_path, DATABASE_URL=pg_url, REDIS_URL=url)
    assert_one_clear_line(result, "Redis", url, "No such file")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_malformed_redis_url_stops_every_command(tmp_path: Path, command: str) -> None:
    result = run_core(command, tmp_path, REDIS_URL=f"redis://:{SECRET}@cache:63x9/0")
    assert_one_clear_line(result, "REDIS_URL=", ":***@cache", "the port must be a number")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_invalid_setting_stops_every_command(tmp_path: Path, command: str) -> None:
    result = run_core(command, tmp_path, LLM_BACKEND="foo")
    assert_one_clear_line(result, "Invalid configuration", "LLM_BACKEND='foo'")


@pytest.mark.parametrize(
    ("name", "value"), [("AUTH_COOKIE_EXPIRY_DAYS", "-1"), ("MAX_PROMPT_CHARS", "abc")]
)
def test_an_invalid_setting_is_named(tmp_path: Path, name: str, value: str) -> None:
    result = run_core("check", tmp_path, **{name: value})
    assert_one_clear_line(result, "Invalid configuration", f"{name}={value!r}")


def test_an_invalid_cookie_key_is_named_but_never_shown(tmp_path: Path) -> None:
    result = run_core("check", tmp_path, AUTH_COOKIE_KEY=SECRET)
    assert_one_clear_line(result, "AUTH_COOKIE_KEY (value hidden)")


def test_a_database_migrated_by_a_newer_version_is_explained(
    tmp_path: Path, pg_admin_url: str
) -> None:
    import uuid

    import psycopg

    from tests.conftest import _libpq_to_url

    name = f"ledger_future_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _libpq_to_url(pg_admin_url, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
            conn.execute("INSERT INTO alembic_version VALUES ('f00dcafe1234')")
        result = run_core("migrate", tmp_path, DATABASE_URL=url)
        assert_one_clear_line(result, "f00dcafe1234", "newer version of Ledger")
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
