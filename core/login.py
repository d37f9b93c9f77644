"""Logging in: the password check with persisted lockouts an attacker cannot aim at the owner,
never saying which of username and password was wrong.

Failed logins are counted per name **and client** (``login_attempts``):

- a browser that signed in as the name before presents its device cookie (OWASP's "device
  cookies"): its failures count on their own row (``device:<id>``), so no one else can lock it;
- any other client counts on its address's row (``addr:<address>``) and, with every other such
  client, on the name's untrusted row (``*``): LOGIN_MAX_ATTEMPTS failures in a row lock that
  address out of the name, LOGIN_UNTRUSTED_MAX_FAILURES together lock the name for all clients
  without a device cookie (guessing from many addresses), never for the owner's own browsers.

Before any of that, an address with LOGIN_ADDRESS_MAX_FAILURES failures (any names) within
LOGIN_LOCKOUT_MINUTES must wait (``core.throttle``, in Redis); a refused attempt writes nothing,
which also caps the rows one address can make for names that have no account.

Names with and without an account take the same path (the same rows, queries and locks, and one
bcrypt check at the configured cost, against a dummy hash when there is no account), so neither
the answers, the timing, the queueing nor the lockout tell whether a username exists.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import redis
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from core import accounts, clock, database, metrics, throttle
from core.accounts import USERNAME_RE, Identity, get_by_username
from core.config import Settings, get_settings
from core.errors import AccountDisabled, AccountLocked, AuthenticationFailed, LedgerError
from core.models import LoginAttempt
from core.passwords import dummy_hash, hash_cost, hash_password, verify_password

MAX_LOGIN_NAME = 64  # longer input cannot be a username; it is cut before any lookup
ATTEMPT_RETENTION = timedelta(days=30)
WRONG_CREDENTIALS = "Wrong username or password."
UNTRUSTED = "*"  # the row of every client without the name's device cookie, together
LOCAL = "local"  # the address of a command run on the machine itself (the terminal client)

Outcome = Literal["ok", "bad_credentials", "locked", "disabled", "throttled"]


@dataclass(frozen=True)
class Client:
    """Who is trying: the address the app trusts (``core.client_address``) and, when the browser
    holds a genuine device cookie for the name tried, its device id."""

    address: str = LOCAL
    device: uuid.UUID | None = None

    def rows(self) -> list[str]:
        """The ``login_attempts`` rows an attempt from this client counts on."""
        if self.device is not None:
            return [f"device:{self.device}"]
        return [f"addr:{self.address[:70]}", UNTRUSTED]


@dataclass(frozen=True)
class LoginResult:
    """What a login attempt came to. The bookkeeping is in ``db``: commit it in every case."""

    outcome: Outcome
    identity: Identity | None = None
    issued_at: datetime | None = None
    token_id: uuid.UUID | None = None  # the new login's row in login_tokens
    error: LedgerError | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def address_limit(settings: Settings) -> throttle.Limit:
    return throttle.Limit(
        "login", settings.login_address_max_failures, settings.login_lockout_minutes * 60
    )


def _minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute" if minutes == 1 else f"{minutes} minutes"


def _locked_message(until: datetime, now: datetime, client: str) -> str:
    wait = _minutes((until - now).total_seconds())
    if client == UNTRUSTED:
        return (
            f"Too many failed logins for this name from browsers that never signed in with it: "
            f"try again in {wait}, or log in from a browser you have used before."
        )
    return f"Too many failed logins: try again in {wait}."


def _failed(outcome: Outcome, error: LedgerError) -> LoginResult:
    metrics.LOGINS.labels(outcome=outcome).inc()
    return LoginResult(outcome, error=error)


def _limits(settings: Settings, client: str) -> int:
    if client == UNTRUSTED:
        return settings.login_untrusted_max_failures
    return settings.login_max_attempts


Rows = dict[str, tuple[int, datetime | None, datetime]]  # client: (failed, locked_until, updated)


def _lock_rows(db: Session, name: str, clients: list[str], now: datetime) -> Rows:
    """Insert the attempt rows or lock the existing ones until commit (a no-op update): so
    concurrent attempts on one name queue behind the bcrypt check, alike for names with and
    without an account."""
    found = {}
    for client in clients:
        failed, locked_until, updated_at = db.execute(
            pg_insert(LoginAttempt)
            .values(name=name, client=client, failed=0, updated_at=now)
            .on_conflict_do_update(
                index_elements=[LoginAttempt.name, LoginAttempt.client],
                set_={"failed": LoginAttempt.failed},
            )
            .returning(LoginAttempt.failed, LoginAttempt.locked_until, LoginAttempt.updated_at)
        ).one()
        found[client] = (failed, locked_until, updated_at)
    return found


def attempt(
    db: Session, r: redis.Redis, *, username: str, password: str, client: Client | None = None
) -> LoginResult:
    """Check a username and password from ``client``. Never raises for bad input.

    Order: an address over its limit is refused at once (nothing written); a lock in force on
    one of the client's rows refuses (the password is not even compared, though the same bcrypt
    cost is paid); a wrong password counts a failure on each row, and a row reaching its limit
    locks for LOGIN_LOCKOUT_MINUTES; a right password on a disabled account says so; success
    clears the client's own row (not the untrusted row others share) and issues a login token.
    The caller commits ``db`` whatever the outcome, so failures are remembered.
    """
    client = client or Client()
    settings = get_settings()
    now = clock.now()
    name = username.strip()[:MAX_LOGIN_NAME]
    limit = address_limit(settings)
    wait = throttle.retry_after(r, limit, client.address)
    if wait is not None:
        verify_password(password, dummy_hash())
        return _failed(
            "throttled",
            AccountLocked(
                f"Too many failed logins from your network: try again in {_minutes(wait)}."
            ),
        )
    if not USERNAME_RE.fullmatch(name):
        # No account can have this name (the rules are public): nothing is revealed, and
        # nothing is stored but the address's count.
        verify_password(password, dummy_hash())
        throttle.hit(r, limit, client.address)
        return _failed("bad_credentials", AuthenticationFailed(WRONG_CREDENTIALS))
    key = name.lower()
    rows = _lock_rows(db, key, client.rows(), now)
    user = get_by_username(db, username=name, for_update=True)
    locked = {c: until for c, (_, until, _) in rows.items() if until is not None and until > now}
    if locked:
        verify_password(password, dummy_hash())
        which, until = max(locked.items(), key=lambda item: item[1])
        return _failed("locked", AccountLocked(_locked_message(until, now, which)))
    right = verify_password(password, user.password_hash if user else dummy_hash())
    if user is None or not right:
        throttle.hit(r, limit, client.address)
        return _count_failure(db, key, rows, now, settings)
    if user.disabled:
        return _failed(
            "disabled",
            AccountDisabled("This account is disabled. Ask an administrator to enable it."),
        )
    own = [c for c in rows if c != UNTRUSTED]
    db.execute(
        update(LoginAttempt)
        .where(LoginAttempt.name == key, LoginAttempt.client.in_(own))
        .values(failed=0, locked_until=None, updated_at=now)
    )
    user.last_login_at = now
    if hash_cost(user.password_hash) != settings.bcrypt_rounds:
        user.password_hash = hash_password(password)  # follow a changed BCRYPT_ROUNDS
    token = accounts.issue_login_token(
        db,
        user_id=user.id,
        issued_at=now,
        expires_at=now + timedelta(days=settings.auth_cookie_expiry_days),
    )
    db.flush()
    metrics.LOGINS.labels(outcome="ok").inc()
    return LoginResult("ok", identity=Identity.of(user), issued_at=now, token_id=token)


def _count_failure(
    db: Session, name: str, rows: Rows, now: datetime, settings: Settings
) -> LoginResult:
    """One more failure on each row; a row reaching its limit locks. An expired lock starts a
    fresh count, and so does an untrusted count whose last failure is older than the lockout
    period (it counts guesses from many addresses within a period, not forever)."""
    period = timedelta(minutes=settings.login_lockout_minutes)
    newly_locked: list[tuple[str, datetime]] = []
    for client, (failed, locked_until, updated_at) in rows.items():
        stale = client == UNTRUSTED and updated_at < now - period
        fresh = locked_until is not None or stale
        failed = 1 if fresh else failed + 1
        until = now + period if failed >= _limits(settings, client) else None
        if until is not None:
            newly_locked.append((client, until))
        db.execute(
            update(LoginAttempt)
            .where(LoginAttempt.name == name, LoginAttempt.client == client)
            .values(failed=failed, locked_until=until, updated_at=now)
        )
    if newly_locked:
        metrics.LOCKOUTS.inc()
        which, until = newly_locked[0]
        return _failed("bad_credentials", AccountLocked(_locked_message(until, now, which)))
    return _failed("bad_credentials", AuthenticationFailed(WRONG_CREDENTIALS))


def lock_of(db: Session, *, name: str, now: datetime | None = None) -> datetime | None:
    """Until when the name is locked for browsers that never signed in with it (None: it is
    not): what the admin page shows as "locked"."""
    now = now or clock.now()
    until = db.scalar(
        select(LoginAttempt.locked_until).where(
            LoginAttempt.name == name.lower(), LoginAttempt.client == UNTRUSTED
        )
    )
    return until if until is not None and until > now else None


def clear_attempts(db: Session, *, name: str) -> None:
    """Forget every failed login and lock for a name (admin unlock, a password reset)."""
    db.execute(delete(LoginAttempt).where(LoginAttempt.name == name.lower()))


def prune_attempts(db: Session) -> int:
    """Forget attempt rows not touched for ATTEMPT_RETENTION (30 days) whose lock is over;
    returns how many.

    Run at start (``make run``), not per attempt: an extra statement on the login path would
    cost every attempt.
    """
    cutoff = clock.now() - ATTEMPT_RETENTION
    result = db.execute(
        delete(LoginAttempt).where(
            LoginAttempt.updated_at < cutoff,
            (LoginAttempt.locked_until.is_(None)) | (LoginAttempt.locked_until < cutoff),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def prepare_login_records() -> str:
    """The ``make run`` step (core.cli.services.PREPARE_STEPS): prune old attempts and expired
    login tokens."""
    with database.session_scope() as session:
        attempts = prune_attempts(session)
        tokens = accounts.prune_login_tokens(session)
    return (
        f"login records: {attempts} failed-login rows older than 30 days and {tokens} "
        "expired login tokens forgotten"
    )


def authenticate(
    db: Session, r: redis.Redis, *, username: str, password: str, client: Client | None = None
) -> Identity:
    """``attempt`` for callers that prefer an exception (the CLI's terminal client).

    Raises AuthenticationFailed, AccountLocked or AccountDisabled after writing the
    bookkeeping into ``db``; a caller that wants failures to count commits before it
    lets the error end its transaction.
    """
    result = attempt(db, r, username=username, password=password, client=client)
    if result.error is not None:
        raise result.error
    assert result.identity is not None
    return result.identity
