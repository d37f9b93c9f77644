"""Everything the app needs before it serves its first page, run by `make run` (and the
container's prestart). Each step is idempotent; a step that fails raises a LedgerError whose
message is the one line the operator sees.

``check_services()`` is the app's view of the same: the router calls it and shows its lines
instead of pages when something is wrong."""

from __future__ import annotations

from collections.abc import Callable

from core import accounts, admin, cookies, db, migrate, services
from core.config import get_settings
from core.errors import LedgerError

# Features add steps here (e.g. generating the cookie key); each returns a line to print.
EXTRA_STEPS: list[Callable[[], str]] = [
    cookies.prepare_key,  # DATA_DIR/auth_cookie.key when AUTH_COOKIE_KEY is unset
    admin.prepare_admin_hint,  # "none yet: run create-admin"
    accounts.prepare_login_failures,  # forget unknown names not tried for 30 days
]


def prepare() -> list[str]:
    settings = get_settings()
    lines = []
    engine = db.get_engine()
    services.ping_postgres(engine)
    services.ping_redis(services.redis_client(settings))
    for info in services.describe(settings):
        lines.append(f"{info.name}: {info.url}")
    before = migrate.current(engine)
    migrate.upgrade(engine)
    lines.append(f"database schema: {before or 'empty'} -> {migrate.current(engine)}")
    lines.extend(step() for step in EXTRA_STEPS)
    return lines


def _problem(exc: Exception) -> str:
    explained = services.explain(exc)
    if explained is None:
        raise exc
    return str(explained)


def check_services() -> list[str]:
    """One line per problem that stops the app from working; empty when all is well.

    Checks the settings, that PostgreSQL and Redis answer, and that the database schema is the
    one this code expects. Starts the embedded servers if they are the configured ones (as the
    app would on its first query). Never raises for a problem a person can fix.
    """
    try:
        settings = get_settings()
    except LedgerError as exc:
        return [str(exc)]
    problems: list[str] = []
    try:
        engine = db.get_engine()
        services.ping_postgres(engine)
        current = migrate.current(engine)
        wanted = migrate.head()
        if current != wanted:
            problems.append(
                f"The database schema is at {current or 'nothing (empty database)'}, this "
                f"version needs {wanted}: run `python -m core migrate` (make run does it)."
            )
    except Exception as exc:
        problems.append(_problem(exc))
    try:
        services.ping_redis(services.redis_client(settings))
    except Exception as exc:
        problems.append(_problem(exc))
    return problems
