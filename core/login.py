"""Logging in: the password check with a persisted lockout, never saying which of username
and password was wrong.

Login costs the same either way: an unknown name is checked against a dummy hash of the
configured cost, and failures for unknown names are counted and locked in ``login_failures``
exactly as an account's are in ``users``, so even the lockout message cannot be used to find
out that a name exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from core import clock, database, metrics
from core.accounts import USERNAME_RE, Identity, get_by_username
from core.config import get_settings
from core.errors import AccountDisabled, AccountLocked, AuthenticationFailed, LedgerError
from core.models import LoginFailure
from core.passwords import dummy_hash, hash_cost, hash_password, verify_password

MAX_LOGIN_NAME = 64  # longer input cannot be a username; it is cut before any lookup
UNKNOWN_NAME_RETENTION = timedelta(days=30)
WRONG_CREDENTIALS = "Wrong username or password."


Outcome = Literal["ok", "bad_credentials", "locked", "disabled"]


@dataclass(frozen=True)
class LoginResult:
    """What a login attempt came to. The bookkeeping is in ``db``: commit it in every case."""

    outcome: Outcome
    identity: Identity | None = None
    issued_at: datetime | None = None
    error: LedgerError | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def _locked_message(until: datetime, now: datetime) -> str:
    minutes = max(1, math.ceil((until - now).total_seconds() / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed logins: try again in {minutes} {unit}."


def _failed(outcome: Outcome, error: LedgerError) -> LoginResult:
    metrics.LOGINS.labels(outcome=outcome).inc()
    return LoginResult(outcome, error=error)


def attempt(db: Session, *, username: str, password: str) -> LoginResult:
    """Check a username and password, with the persisted lockout. Never raises for bad input.

    Order: a lock in force refuses at once (the password is not even compared, though the
    same bcrypt cost is paid); a wrong password counts a failure, and the LOGIN_MAX_ATTEMPTS-th
    in a row locks the name for LOGIN_LOCKOUT_MINUTES; a right password on a disabled account
    says so; success resets the count. An expired lock starts a fresh count. The caller
    commits ``db`` whatever the outcome, so failures are remembered.
    """
    now = clock.now()
    name = username.strip()[:MAX_LOGIN_NAME]
    user = get_by_username(db, username=name, for_update=True)
    if user is None:
        return _login_unknown(db, name=name.lower(), password=password, now=now)

    settings = get_settings()
    if user.locked_until is not None and user.locked_until <= now:
        user.failed_logins, user.locked_until = 0, None
    if user.locked_until is not None:
        verify_password(password, dummy_hash())
        return _failed("locked", AccountLocked(_locked_message(user.locked_until, now)))
    if not verify_password(password, user.password_hash):
        user.failed_logins += 1
        db.flush()
        if user.failed_logins >= settings.login_max_attempts:
            user.locked_until = now + timedelta(minutes=settings.login_lockout_minutes)
            db.flush()
            metrics.LOCKOUTS.inc()
            return _failed(
                "bad_credentials", AccountLocked(_locked_message(user.locked_until, now))
            )
        return _failed("bad_credentials", AuthenticationFailed(WRONG_CREDENTIALS))
    if user.disabled:
        return _failed(
            "disabled",
            AccountDisabled("This account is disabled. Ask an administrator to enable it."),
        )
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    if hash_cost(user.password_hash) != settings.bcrypt_rounds:
        user.password_hash = hash_password(password)  # follow a changed BCRYPT_ROUNDS
    db.flush()
    metrics.LOGINS.labels(outcome="ok").inc()
    return LoginResult("ok", identity=Identity.of(user), issued_at=now)


def _login_unknown(db: Session, *, name: str, password: str, now: datetime) -> LoginResult:
    """The same answers, cost, lock and queueing for a name that has no account."""
    if not USERNAME_RE.fullmatch(name):
        # No account can have this name (the rules are public), so nothing is revealed and
        # nothing is stored.
        verify_password(password, dummy_hash())
        return _failed("bad_credentials", AuthenticationFailed(WRONG_CREDENTIALS))
    settings = get_settings()
    # Insert or touch the row first, which locks it until commit: concurrent attempts on one
    # unknown name then queue behind the bcrypt check exactly as they do on a real account.
    failed, locked_until = db.execute(
        pg_insert(LoginFailure)
        .values(name=name, failed_logins=0, updated_at=now)
        .on_conflict_do_update(index_elements=[LoginFailure.name], set_={"updated_at": now})
        .returning(LoginFailure.failed_logins, LoginFailure.locked_until)
    ).one()
    verify_password(password, dummy_hash())
    if locked_until is not None and locked_until > now:
        return _failed("locked", AccountLocked(_locked_message(locked_until, now)))
    failed = 1 if locked_until is not None else failed + 1  # an expired lock starts afresh
    until = None
    if failed >= settings.login_max_attempts:
        until = now + timedelta(minutes=settings.login_lockout_minutes)
    db.execute(
        update(LoginFailure)
        .where(LoginFailure.name == name)
        .values(failed_logins=failed, locked_until=until)
    )
    if until is not None:
        metrics.LOCKOUTS.inc()
        return _failed("bad_credentials", AccountLocked(_locked_message(until, now)))
    return _failed("bad_credentials", AuthenticationFailed(WRONG_CREDENTIALS))


def prune_login_failures(db: Session) -> int:
    """Forget unknown names not tried for UNKNOWN_NAME_RETENTION (30 days); returns how many.

    Run at start (``make run``), not per attempt: an extra statement only on the unknown-name
    path would make it measurably slower than a real account's.
    """
    cutoff = clock.now() - UNKNOWN_NAME_RETENTION
    result = db.execute(
        delete(LoginFailure).where(
            LoginFailure.updated_at < cutoff,
            (LoginFailure.locked_until.is_(None)) | (LoginFailure.locked_until < cutoff),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def prepare_login_failures() -> str:
    """The ``make run`` step (core.cli.services.PREPARE_STEPS) that prunes ``login_failures``."""
    with database.session_scope() as session:
        pruned = prune_login_failures(session)
    return f"failed logins of unknown names: {pruned} older than 30 days forgotten"


def authenticate(db: Session, *, username: str, password: str) -> Identity:
    """``attempt`` for callers that prefer an exception (the CLI's terminal client).

    Raises AuthenticationFailed, AccountLocked or AccountDisabled after writing the
    bookkeeping into ``db``; a caller that wants failures to count commits before it
    lets the error end its transaction.
    """
    result = attempt(db, username=username, password=password)
    if result.error is not None:
        raise result.error
    assert result.identity is not None
    return result.identity
