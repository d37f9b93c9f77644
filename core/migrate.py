"""Run Alembic from code (CLI, app start, tests) with the project's alembic.ini."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from core.config import SOURCE_ROOT
from core.errors import SchemaError, ServiceUnavailable
from core.urls import redact_url


def alembic_config(url: str | None = None) -> Config:
    root = SOURCE_ROOT or Path.cwd()
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@contextmanager
def _explained(engine: Engine, action: str) -> Iterator[None]:
    """Alembic and database failures as one ``SchemaError`` line, never a traceback."""
    url = redact_url(engine.url.render_as_string(hide_password=True))
    try:
        yield
    except CommandError as exc:
        raise SchemaError(
            f"The database schema at {url} could not be {action}: {exc}. If a newer version "
            "of Ledger migrated this database, run that version (or a database of its own)."
        ) from None
    except DBAPIError as exc:
        if exc.connection_invalidated or isinstance(exc, OperationalError):
            reason = str(exc.orig or exc).strip().splitlines()[0]
            raise ServiceUnavailable("PostgreSQL", url, reason) from None
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise SchemaError(f"The database schema at {url} could not be {action}: {reason}") from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind ``engine`` to ``revision``, in one connection."""
    cfg = alembic_config()
    with _explained(engine, f"upgraded to {revision}"), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    cfg = alembic_config()
    with _explained(engine, f"downgraded to {revision}"), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@lru_cache(maxsize=1)
def head() -> str | None:
    """The newest revision in ``migrations/`` (read once per process)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
