"""What administrators do to accounts: list them with usage, disable or enable, change roles,
reset passwords, lift lockouts. Every function checks, in the database, that the actor is an
enabled admin, and none of them can leave the system without an enabled administrator.

The operator's commands (``python -m core create-admin`` / ``reset-password``) run with shell
access to the server and so need no actor: they are the ``create_admin`` and
``operator_reset_password`` functions at the end.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import accounts, clock
from core.errors import Conflict, Forbidden, NotFound
from core.login import UNTRUSTED
from core.models import LlmCall, LoginAttempt, User

if TYPE_CHECKING:
    import pandas as pd

# No 0/O, 1/l/I: the one-time password is read off a screen and typed.
_OTP_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@dataclass(frozen=True)
class UserSummary:
    """One row of the admin page's user list."""

    id: uuid.UUID
    username: str
    display_name: str
    email: str
    role: str
    disabled: bool
    locked_until: datetime | None  # for browsers that never signed in as this user
    must_change_password: bool
    created_at: datetime
    last_login_at: datetime | None
    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def status(self, *, now: datetime) -> str:
        """The account's state in a word or two, as the admin page lists it."""
        if self.disabled:
            return "disabled"
        if self.locked(now=now):
            assert self.locked_until is not None
            return f"locked for new browsers until {self.locked_until:%H:%M} UTC"
        return "must change password" if self.must_change_password else "active"

    def locked(self, *, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


def users_frame(users: list[UserSummary], *, now: datetime) -> pd.DataFrame:
    """The admin page's table of accounts: one row per user, usage totals included, the
    columns an administrator scans first on the left (email and creation date last).
    A user who never logged in has no "last login" (NaT), even when nobody has."""
    import pandas as pd  # here: `make run`'s prepare step imports this module, not pandas

    return pd.DataFrame(
        {
            "username": [u.username for u in users],
            "display name": [u.display_name for u in users],
            "role": [u.role for u in users],
            "status": [u.status(now=now) for u in users],
            "last login": pd.to_datetime(pd.Series([u.last_login_at for u in users]), utc=True),
            "requests": [u.requests for u in users],
            "tokens": [u.tokens for u in users],
            "email": [u.email for u in users],
            "created": pd.to_datetime(pd.Series([u.created_at for u in users]), utc=True),
        }
    )


def for_display(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as the page shows it: the last login as "2026-12-06 09:30" (UTC) or "never",
    the creation day alone (narrow enough for the table to fit a 1280 px screen)."""
    shown = frame.copy()
    shown["last login"] = shown["last login"].dt.strftime("%Y-%m-%d %H:%M").fillna("never")
    shown["created"] = shown["created"].dt.strftime("%Y-%m-%d")
    return shown


def require_admin(db: Session, *, actor_id: uuid.UUID) -> User:
    """The actor's row if they are an enabled administrator now; else ``Forbidden``."""
    actor = db.get(User, actor_id)
    if actor is None or actor.disabled or actor.role != "admin":
        raise Forbidden("Only administrators can do this.")
    return actor


def list_users(db: Session, *, actor_id: uuid.UUID) -> list[UserSummary]:
    """Every account with its lifetime usage (requests and tokens), summed in SQL."""
    require_admin(db, actor_id=actor_id)
    usage = (
        select(
            LlmCall.user_id.label("user_id"),
            func.count().label("requests"),
            func.coalesce(func.sum(LlmCall.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(LlmCall.completion_tokens), 0).label("completion_tokens"),
        )
        .group_by(LlmCall.user_id)
        .subquery()
    )
    lock = (
        select(LoginAttempt.name, LoginAttempt.locked_until)
        .where(LoginAttempt.client == UNTRUSTED, LoginAttempt.locked_until > clock.now())
        .subquery()
    )
    stmt = (
        select(
            User,
            lock.c.locked_until,
            func.coalesce(usage.c.requests, 0),
            func.coalesce(usage.c.prompt_tokens, 0),
            func.coalesce(usage.c.completion_tokens, 0),
        )
        .outerjoin(usage, usage.c.user_id == User.id)
        .outerjoin(lock, lock.c.name == func.lower(User.username))
        .order_by(func.lower(User.username))
    )
    return [
        UserSummary(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            email=user.email,
            role=user.role,
            disabled=user.disabled,
            locked_until=locked_until,
            must_change_password=user.must_change_password,
            created_at=user.created_at,
            last_login_at=user.last_login_at,
            requests=int(requests),
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
        )
        for user, locked_until, requests, prompt, completion in db.execute(stmt).all()
    ]


def _lock_enabled_admins(db: Session, *, actor_id: uuid.UUID) -> list[uuid.UUID]:
    """Lock every enabled admin row, always in id order, before deciding about admins, and
    check under that lock that the actor is still one of them.

    Two admins demoting each other at the same moment then queue up instead of both
    seeing "another admin exists", and the fixed order cannot deadlock. An actor demoted
    or disabled while waiting is refused, as the regular user they now are; an actor who
    passes stays an enabled admin until the commit (their row is locked).
    """
    stmt = (
        select(User.id)
        .where(User.role == "admin", User.disabled.is_(False))
        .order_by(User.id)
        .with_for_update()
    )
    admins = list(db.scalars(stmt))
    if actor_id not in admins:
        raise Forbidden("Only administrators can do this.")
    return admins


def _target(db: Session, user_id: uuid.UUID) -> User:
    user = db.get(User, user_id, with_for_update=True, populate_existing=True)
    if user is None:
        raise NotFound("No such user.")
    return user


def set_disabled(db: Session, *, actor_id: uuid.UUID, user_id: uuid.UUID, disabled: bool) -> User:
    """Disable (which also ends the user's logins) or enable an account.

    This can never disable the last enabled admin: the actor may not disable themselves,
    and is an enabled admin whose row stays locked until the commit.
    """
    require_admin(db, actor_id=actor_id)
    if disabled and user_id == actor_id:
        raise Conflict("You cannot disable your own account.")
    _lock_enabled_admins(db, actor_id=actor_id)
    user = _target(db, user_id)
    if user.disabled == disabled:
        return user
    user.disabled = disabled
    db.flush()
    if disabled:
        accounts.revoke_sessions(db, user_id=user.id)
    return user


def set_role(db: Session, *, actor_id: uuid.UUID, user_id: uuid.UUID, role: str) -> User:
    """Change a role; the user's current logins end so every page sees the new role."""
    role = accounts.validate_role(role)
    require_admin(db, actor_id=actor_id)
    admins = _lock_enabled_admins(db, actor_id=actor_id)
    user = _target(db, user_id)
    if user.role == role:
        return user
    if role != "admin" and user.id in admins and len(admins) == 1:  # an admin demoting self
        raise Conflict(
            f"{user.username} is the last enabled administrator and cannot be made a regular "
            "user: make another user an administrator first."
        )
    user.role = role
    db.flush()
    accounts.revoke_sessions(db, user_id=user.id)
    return user


def generate_one_time_password(length: int = 16) -> str:
    """A random password in groups of four (``abcd-efgh-...``), easy to read out and type."""
    chars = "".join(secrets.choice(_OTP_ALPHABET) for _ in range(length))
    return "-".join(chars[i : i + 4] for i in range(0, length, 4))


def reset_password(db: Session, *, actor_id: uuid.UUID, user_id: uuid.UUID) -> str:
    """Give the user a one-time password (returned once, never stored in clear).

    The user's logins end, any lockout is lifted, and the next login must choose a new
    password before anything else.
    """
    require_admin(db, actor_id=actor_id)
    if user_id == actor_id:
        raise Conflict("Change your own password on the Account page.")
    user = _target(db, user_id)
    password = generate_one_time_password()
    accounts.set_password(db, user=user, password=password, must_change=True)
    return password


def unlock(db: Session, *, actor_id: uuid.UUID, user_id: uuid.UUID) -> User:
    """Lift every lockout of the name now (from any address or browser) and forget the failed
    attempts."""
    require_admin(db, actor_id=actor_id)
    user = _target(db, user_id)
    accounts.clear_login_attempts(db, name=user.username)
    db.flush()
    return user


# --- operator (CLI) -------------------------------------------------------------------------


def count_enabled_admins(db: Session) -> int:
    stmt = select(func.count()).where(User.role == "admin", User.disabled.is_(False))
    return int(db.scalar(stmt) or 0)


def prepare_admin_hint() -> str:
    """The ``make run`` step (core.startup.EXTRA_STEPS): say how to create the first admin."""
    from core import database

    with database.session_scope() as session:
        admins = count_enabled_admins(session)
    if admins:
        return f"administrators: {admins} enabled"
    return "administrators: none yet; create one with `.venv/bin/python -m core create-admin`"


def create_admin(
    db: Session, *, username: str, email: str, display_name: str, password: str
) -> User:
    """A new administrator account (the first one comes from the command line)."""
    return accounts.create_user(
        db,
        username=username,
        email=email,
        display_name=display_name,
        password=password,
        role="admin",
    )


def operator_reset_password(
    db: Session, *, username: str, password: str | None = None
) -> tuple[User, str | None]:
    """Set a password from the command line, or generate a one-time one (returned).

    Lifts any lockout and ends the user's logins. A chosen password is final; a generated
    one must be changed at the next login.
    """
    user = accounts.get_by_username(db, username=username, for_update=True)
    if user is None:
        raise NotFound(f"No user named {username.strip()[:64]!r}.")
    if password is None:
        one_time = generate_one_time_password()
        accounts.set_password(db, user=user, password=one_time, must_change=True)
        return user, one_time
    accounts.validate_password(password, username=user.username)
    accounts.set_password(db, user=user, password=password)
    return user, None
