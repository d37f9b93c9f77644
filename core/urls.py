"""Service URLs: checked before use, and printable without their secrets.

Pure functions (no connection is made) shared by the settings, which refuse a malformed URL at
start, and by ``core.services``, which shows where it connects.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

_SECRET_PARAMS = {"password", "sslpassword", "pass", "passwd"}


def redact_url(url: str) -> str:
    """The URL with any password (user info or query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if password is not None:
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{parts.username or ''}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
            query = urlencode(
                [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="/*"
            )
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    rebuilt = f"{parts.scheme}://{netloc}{parts.path}"  # keeps "unix:///path" intact
    rebuilt += f"?{query}" if query else ""
    return rebuilt + (f"#{parts.fragment}" if parts.fragment else "")


def sqlalchemy_url(url: str) -> str:
    """Any PostgreSQL URL spelled for SQLAlchemy with the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _port_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (parsing the port is the check)
    except ValueError as exc:
        if "IPv6" in str(exc):
            return "the host is a malformed IPv6 address"
        return "the port must be a number from 1 to 65535"
    return None


def check_database_url(url: str) -> str:
    """``url`` if SQLAlchemy + psycopg can use it, else ``ValueError`` with a safe reason.

    The reason never contains the URL itself (the caller shows it with the password hidden).
    """
    if not url.startswith(("postgresql://", "postgresql+", "postgres://")):
        raise ValueError("must start with postgresql:// (or postgresql+psycopg://)")
    problem = _port_problem(url)
    if problem:
        raise ValueError(f"not a valid URL ({problem})")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(sqlalchemy_url(url))
    except (ArgumentError, ValueError):
        raise ValueError(
            "not a valid URL (expected postgresql://user:password@host:5432/database)"
        ) from None
    if parsed.drivername != "postgresql+psycopg":
        driver = parsed.drivername.partition("+")[2]
        raise ValueError(f"the driver {driver!r} is not supported; use postgresql://...")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ValueError("not a valid URL (the port must be a number from 1 to 65535)")
    return url


_REDIS_DB_PATH = re.compile(r"^/?\d*$")


def check_redis_url(url: str) -> str:
    """``url`` if redis-py can use it as given, else ``ValueError`` with a safe reason."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    problem = _port_problem(url)
    if problem:
        raise ValueError(f"not a valid URL ({problem})")
    from redis.connection import parse_url

    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        # redis-py's reasons name the offending part, never the password.
        raise ValueError(f"not a valid URL ({exc})") from None
    if not url.startswith("unix://"):
        path = urlsplit(url).path
        if not _REDIS_DB_PATH.fullmatch(path):
            raise ValueError(
                "not a valid URL (the path must be a database number, as in redis://host:6379/0)"
            )
    return url
