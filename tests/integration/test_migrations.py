"""The schema is made by Alembic alone, and Alembic agrees with the models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect

from core import migrate, services
from core.models import Base


@pytest.fixture
def scratch_engine(pg_admin_url: str) -> Iterator[Engine]:
    name = f"ledger_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    from urllib.parse import urlsplit, urlunsplit

    url = urlunsplit(urlsplit(pg_admin_url)._replace(path=f"/{name}"))
    engine = create_engine(services.sqlalchemy_url(url))
    yield engine
    engine.dispose()
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_upgrade_head_leaves_nothing_for_autogenerate(scratch_engine: Engine) -> None:
    migrate.upgrade(scratch_engine)
    with scratch_engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_downgrade_to_base_then_upgrade_again(scratch_engine: Engine) -> None:
    migrate.upgrade(scratch_engine)
    migrate.downgrade(scratch_engine, "base")
    tables = set(inspect(scratch_engine).get_table_names())
    assert tables <= {"alembic_version"}
    migrate.upgrade(scratch_engine)
    tables = set(inspect(scratch_engine).get_table_names())
    assert {"users", "conversation_sessions", "llm_calls"} <= tables
    assert migrate.current(scratch_engine) == migrate.head()
