"""Everything the app needs before it serves its first page, run by `make run` (and the
container's prestart). Each step is idempotent; a step that fails raises a LedgerError whose
message is the one line the operator sees."""

from __future__ import annotations

from collections.abc import Callable

from core import accounts, admin, cookies, db, migrate, services
from core.config import get_settings

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
