"""Accounts for tests: one way to make a user, whatever the test then needs from it."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core import accounts
from core.accounts import Identity
from core.models import User

PASSWORD = "correct horse battery"


def make_user(
    dbs: Session,
    name: str = "alice",
    role: str = "user",
    *,
    display_name: str | None = None,
    password: str = PASSWORD,
    commit: bool = False,
) -> User:
    """``name``'s account (email ``name@example.com``, display name ``Name``), flushed; with
    ``commit`` also committed, so other connections (a page, a subprocess) see it."""
    user = accounts.create_user(
        dbs,
        username=name,
        email=f"{name}@example.com",
        display_name=display_name or name.title(),
        password=password,
        role=role,
    )
    if commit:
        dbs.commit()
    return user


def identity(dbs: Session, name: str, role: str = "user", *, commit: bool = False) -> Identity:
    """The signed-in identity of a new account, as the router hands it to a page."""
    return Identity.of(make_user(dbs, name, role, commit=commit))


def stored(name: str) -> User:
    """``name``'s row as committed now (read in a transaction of its own, detached)."""
    from core import database

    with database.session_scope() as session:
        user = accounts.get_by_username(session, username=name)
        assert user is not None, f"no user {name!r}"
        session.expunge(user)
        return user
