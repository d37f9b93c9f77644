"""Waiting, in a test, until PostgreSQL shows a statement blocked on a row lock."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

_WAITING = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
)


def wait_until_blocked(observer: Session, *, what: str = "the second transaction") -> None:
    """Return once some connection to this database waits on a lock; fail after ten seconds.

    ``observer`` is a session of the test's own, outside the transactions involved."""
    for _ in range(200):
        observer.rollback()
        if observer.scalar(_WAITING):
            return
        threading.Event().wait(0.05)
    pytest.fail(f"{what} never waited for the lock")
