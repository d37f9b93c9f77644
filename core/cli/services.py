"""``check``, ``migrate`` and ``prepare``: the operator's commands, and what `make run` runs
before the app starts.

These stay light on purpose: `make run` imports this module (never pandas or the chat) on
every start. Each step of ``prepare`` is idempotent; a step that fails raises a LedgerError
whose message is the one line the operator sees.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from core import admin, cookies, database, login, migrate, readiness, services

# Steps after the migration; each returns a line to print.
PREPARE_STEPS: list[Callable[[], str]] = [
    cookies.prepare_key,  # DATA_DIR/auth_cookie.key when AUTH_COOKIE_KEY is unset
    admin.prepare_admin_hint,  # "none yet: run create-admin"
    login.prepare_login_records,  # forget old failed logins and expired login tokens
]


def prepare() -> list[str]:
    """Check the services, migrate, then run ``PREPARE_STEPS``; the lines to print."""
    lines = [f"{info.name}: {info.url}" for info in readiness.require_storage()]
    engine = database.get_engine()
    before = migrate.current(engine)
    migrate.upgrade(engine)
    lines.append(f"database schema: {before or 'empty'} -> {migrate.current(engine)}")
    lines.extend(step() for step in PREPARE_STEPS)
    return lines


def _check(args: argparse.Namespace) -> int:
    """Connect to every service and say what is in use."""
    for info in readiness.require_storage():
        print(f"{info.name}: {info.url} — ok")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    """Bring the database schema to the newest revision."""
    engine = database.get_engine()
    services.ping_postgres(engine)
    before = migrate.current(engine)
    migrate.upgrade(engine, args.revision)
    after = migrate.current(engine)
    print(f"database schema: {before or 'empty'} -> {after}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    for line in prepare():
        print(line)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="connect to PostgreSQL and Redis and report")
    p.set_defaults(handler=_check)

    p = sub.add_parser("migrate", help="upgrade the database schema (alembic upgrade)")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(handler=_migrate)

    p = sub.add_parser("prepare", help="check services, migrate and prepare secrets (make run)")
    p.set_defaults(handler=_prepare)
