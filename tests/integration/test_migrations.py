"""The schema is made by Alembic alone, and Alembic agrees with the models."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session

from core import migrate, sessions
from core.models import Base
from core.urls import sqlalchemy_url
from tests.conftest import ROOT, _libpq_to_url

NewDatabase = Callable[[], str]


@pytest.fixture
def new_database(pg_admin_url: str) -> Iterator[NewDatabase]:
    """``new_database()``: the libpq URL of a database made for this test (dropped after it)."""
    made: list[str] = []

    def make() -> str:
        name = f"ledger_mig_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return _libpq_to_url(pg_admin_url, name)

    yield make
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def scratch_engine(new_database: NewDatabase) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(new_database()))
    yield engine
    engine.dispose()


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


# --- the `alembic` command itself (migrations/env.py connects on its own) --------------------


def alembic(*args: str, database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``alembic ARGS`` from the project root, as an operator types it, against that database."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=database_url, DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("alembic")), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result


def tables_and_revision(url: str) -> tuple[set[str], str | None]:
    with psycopg.connect(url) as conn:
        tables = {
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        revision = None
        if "alembic_version" in tables:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
    return tables, revision


def test_the_alembic_command_upgrades_downgrades_and_upgrades_a_new_database(
    new_database: NewDatabase, tmp_path: Path
) -> None:
    url = new_database()
    every_table = {table.name for table in Base.metadata.sorted_tables} | {"alembic_version"}

    alembic("upgrade", "head", database_url=url, tmp_path=tmp_path)
    assert tables_and_revision(url) == (every_table, migrate.head())

    alembic("downgrade", "base", database_url=url, tmp_path=tmp_path)
    assert tables_and_revision(url) == ({"alembic_version"}, None)

    alembic("upgrade", "head", database_url=url, tmp_path=tmp_path)
    assert tables_and_revision(url) == (every_table, migrate.head())
    assert not (tmp_path / "data").exists()  # a configured database: nothing embedded started


def test_alembic_offline_mode_prints_the_sql_and_changes_nothing(
    new_database: NewDatabase, tmp_path: Path
) -> None:
    url = new_database()
    sql = alembic("upgrade", "head", "--sql", database_url=url, tmp_path=tmp_path).stdout
    for table in Base.metadata.sorted_tables:
        assert f"CREATE TABLE {table.name} (" in sql
    assert "CREATE UNIQUE INDEX uq_users_username_lower ON users (lower(username))" in sql
    stamps = re.findall(r"alembic_version SET version_num='(\w+)'", sql)
    assert stamps[-1] == migrate.head()
    assert sql.rstrip().endswith("COMMIT;")
    assert tables_and_revision(url) == (set(), None)  # printed, not run


# --- what autogenerate cannot compare: index definitions, constraints' text ------------------


def schema_objects(url: str) -> dict[str, dict[str, str]]:
    """Every index (its CREATE INDEX statement) and every constraint (its definition) in the
    public schema, by name. The definitions are PostgreSQL's own, so two databases built in
    different ways compare equal only if they really hold the same index."""
    with psycopg.connect(url) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        ).fetchall()
        constraints = conn.execute(
            "SELECT c.conrelid::regclass || '.' || c.conname, pg_get_constraintdef(c.oid) "
            "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
            "WHERE c.connamespace = 'public'::regnamespace AND t.relname <> 'alembic_version'"
        ).fetchall()
    return {"indexes": dict(indexes), "constraints": dict(constraints)}


@pytest.fixture
def migrated_and_declared(new_database: NewDatabase) -> tuple[str, str]:
    """Two new databases: one brought to head by the migrations, one made from the models."""
    migrated, declared = new_database(), new_database()
    engine = create_engine(sqlalchemy_url(migrated))
    migrate.upgrade(engine)
    engine.dispose()
    engine = create_engine(sqlalchemy_url(declared))
    Base.metadata.create_all(engine)
    engine.dispose()
    return migrated, declared


def test_the_migrations_make_exactly_the_indexes_the_models_declare(
    migrated_and_declared: tuple[str, str],
) -> None:
    migrated, declared = (schema_objects(url)["indexes"] for url in migrated_and_declared)
    assert migrated == declared
    # The definitions that autogenerate does not compare are really in both.
    assert "INCLUDE (model, outcome" in migrated["ix_llm_calls_user_created"]
    assert "(lower((username)::text))" in migrated["uq_users_username_lower"]


def test_the_migrations_make_exactly_the_constraints_the_models_declare(
    migrated_and_declared: tuple[str, str],
) -> None:
    migrated, declared = (schema_objects(url)["constraints"] for url in migrated_and_declared)
    assert migrated == declared
    assert migrated["users.ck_users_role"] == (
        "CHECK (((role)::text = ANY ((ARRAY['user'::character varying, "
        "'admin'::character varying])::text[])))"
    )


def test_the_index_comparison_sees_a_changed_index(new_database: NewDatabase) -> None:
    """A migration that built an index without its INCLUDE columns would be caught."""
    url = new_database()
    engine = create_engine(sqlalchemy_url(url))
    migrate.upgrade(engine)
    engine.dispose()
    before = schema_objects(url)["indexes"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP INDEX ix_llm_calls_created")
        conn.execute("CREATE INDEX ix_llm_calls_created ON llm_calls (created_at)")
    assert schema_objects(url)["indexes"] != before


@pytest.mark.parametrize(
    ("first", "second", "index"),
    [
        (("Alice", "alice@example.com"), ("alice", "other@example.com"), "uq_users_username_lower"),
        (("bob", "Bob@Example.com"), ("robert", "bob@example.COM"), "uq_users_email_lower"),
    ],
    ids=["username", "email"],
)
def test_the_database_itself_refuses_a_name_differing_only_in_case(
    scratch_engine: Engine, first: tuple[str, str], second: tuple[str, str], index: str
) -> None:
    migrate.upgrade(scratch_engine)
    url = scratch_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    insert = (
        "INSERT INTO users (id, username, email, display_name, password_hash) "
        "VALUES (%s, %s, %s, 'x', 'x')"
    )
    with psycopg.connect(url) as conn:
        conn.execute(insert, (uuid.uuid4(), *first))
        with pytest.raises(psycopg.errors.UniqueViolation) as refused:
            conn.execute(insert, (uuid.uuid4(), *second))
    assert refused.value.diag.constraint_name == index


# --- the first page of a user's sessions is read from the "newest first" index --------------


def test_a_users_first_page_of_sessions_is_ordered_as_the_newest_first_index(
    dbs: Session,
) -> None:
    """The index serves the query only if it leads with the WHERE's equality column and then
    holds the ORDER BY's columns in the same order and directions (no sort of all rows)."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = dbs.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        sessions.list_for_owner(dbs, user_id=uuid.uuid4(), limit=50)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    (query,) = [s for s in statements if "FROM conversation_sessions" in s]
    where = re.search(r"WHERE conversation_sessions\.(\w+) = ", query)
    order = re.search(r"ORDER BY (.+?) LIMIT", query, re.S)
    assert where and order
    wanted = [where.group(1)] + [
        term.strip().removeprefix("conversation_sessions.") for term in order.group(1).split(",")
    ]

    definition = dbs.execute(
        text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_sessions_owner_updated'")
    ).scalar_one()
    columns = re.search(r"USING btree \((.+)\)$", definition)
    assert columns
    assert [c.strip() for c in columns.group(1).split(",")] == wanted
    assert wanted == ["user_id", "updated_at DESC", "id DESC"]
