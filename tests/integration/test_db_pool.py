"""The engine's pool without pool_pre_ping: a connection the server has ended is replaced at
checkout (asked of the socket, not the server), and read scopes run outside a transaction."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from core import database


def _backend_pid(url: str) -> int:
    with database.get_engine(url).connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pg_admin_url: str, pid: int) -> None:
    """End a backend and wait (up to 5 s) until it has exited, its goodbye sent."""
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        ended = admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()
    assert ended == (True,)


def test_a_connection_the_server_ended_is_replaced_without_an_error(
    pg_url: str, pg_admin_url: str
) -> None:
    database.reset()
    first = _backend_pid(pg_url)  # now idle in the pool
    assert _backend_pid(pg_url) == first  # the pool hands the same connection back
    _terminate(pg_admin_url, first)
    replaced = _backend_pid(pg_url)  # without the checkout check this raises OperationalError
    assert replaced != first
    database.reset()


def test_read_scope_runs_outside_a_transaction(pg_url: str) -> None:
    database.reset()
    with database.read_scope(pg_url) as session:
        # Each statement is its own transaction (no BEGIN sent before it): the transaction
        # started with this statement. After a BEGIN it would have started earlier.
        for _ in range(2):
            same = session.execute(text("SELECT now() = statement_timestamp()")).scalar_one()
            assert same is True
    # Back in the pool, the connection is transactional again for session_scope, where the
    # same check tells the difference: the second statement runs in the first one's transaction.
    with database.session_scope(pg_url) as session:
        session.execute(text("SELECT pg_sleep(0.01)"))
        assert session.execute(text("SELECT now() = statement_timestamp()")).scalar_one() is False
    database.reset()


def test_serve_warns_when_the_workers_pools_could_exceed_postgresqls_connections(
    dbs: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.cli import serve

    allowed = int(dbs.scalar(text("SHOW max_connections")) or 0)
    per_process = database.POOL_SIZE + database.MAX_OVERFLOW
    fits = (allowed - serve.RESERVED_CONNECTIONS) // per_process
    serve._check_connections(max(1, fits))
    assert capsys.readouterr().err == ""
    serve._check_connections(fits + 1)
    warning = capsys.readouterr().err
    assert f"allows {allowed} (max_connections)" in warning and "fewer workers" in warning
