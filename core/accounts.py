"""User accounts: validation rules, password hashing, login with a persisted lockout, session
validity, and the user's own password changes. (Administrators' actions are in core.admin.)

Passwords are hashed with bcrypt over a SHA-256 pre-hash of their NFC form, so every character
of a long passphrase counts (bcrypt alone ignores bytes past 72), no input length can crash it,
and an accented letter typed on any keyboard gives the same hash.

Login never says which of username and password was wrong, and costs the same either way:
an unknown name is checked against a dummy hash of the configured cost, and failures for
unknown names are counted and locked in ``login_failures`` exactly as an account's are in
``users``, so even the lockout message cannot be used to find out that a name exists.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import bcrypt
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import clock, metrics
from core.config import get_settings
from core.errors import (
    AccountDisabled,
    AccountLocked,
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    LedgerError,
)
from core.models import ROLES, LoginFailure, User

USERNAME_RE = re.compile(r"[A-Za-z0-9._-]{3,32}")
# Local part: RFC 5322 "atext" (and any letter), no leading, trailing or double dot; domain:
# dot-separated labels of letters, digits and hyphens.
EMAIL_RE = re.compile(
    r"(?!\.)(?!.*\.\.)[\w.!#$%&'*+/=?^`{|}~-]{1,64}(?<!\.)"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}"
)
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
MAX_DISPLAY_NAME = 100
MAX_LOGIN_NAME = 64  # longer input cannot be a username; it is cut before any lookup
UNKNOWN_NAME_RETENTION = timedelta(days=30)

WRONG_CREDENTIALS = "Wrong username or password."


@dataclass(frozen=True)
class Identity:
    """Who is signed in: what pages and core functions need, without the ORM row."""

    id: uuid.UUID
    username: str
    display_name: str
    role: str
    must_change_password: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def of(cls, user: User) -> Identity:
        return cls(user.id, user.username, user.display_name, user.role, user.must_change_password)


# --- validation (pure) --------------------------------------------------------------------


# Zero-width (non-)joiners are format characters that scripts such as Persian and Hindi, and
# emoji sequences, need; the other format characters (bidi overrides...) can disguise a name.
_JOINERS = {"\u200c", "\u200d"}


def _has_control(value: str) -> bool:
    return any(
        unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") and ch not in _JOINERS for ch in value
    )


def validate_username(username: str) -> str:
    username = username.strip()
    if not USERNAME_RE.fullmatch(username):
        raise InvalidInput(
            "username",
            "Username must be 3 to 32 characters: letters, digits, dot, underscore or hyphen.",
        )
    return username


def validate_email(email: str) -> str:
    email = email.strip()
    if len(email) > 254 or _has_control(email) or not EMAIL_RE.fullmatch(email):
        raise InvalidInput("email", "Enter a valid email address, such as name@example.com.")
    return email


def validate_display_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise InvalidInput("display_name", "Display name must not be empty.")
    if len(name) > MAX_DISPLAY_NAME:
        raise InvalidInput(
            "display_name", f"Display name must be at most {MAX_DISPLAY_NAME} characters."
        )
    if _has_control(name):
        raise InvalidInput("display_name", "Display name must not contain control characters.")
    return name


def validate_password(password: str, *, username: str = "", confirm: str | None = None) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput("password", f"Password must be at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput("password", f"Password must be at most {MAX_PASSWORD} characters.")
    if password != password.strip():
        # The login widget strips what is typed, so such a password could never be used.
        raise InvalidInput("password", "Password must not begin or end with a space.")
    if username and password.casefold() == username.strip().casefold():
        raise InvalidInput("password", "Password must not be the same as the username.")
    if confirm is not None and confirm != password:
        raise InvalidInput("password_confirm", "The two passwords do not match.")
    return password


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput("role", f"Role must be one of: {', '.join(ROLES)}.")
    return role


def registration_problems(
    *, username: str, email: str, display_name: str, password: str, password_confirm: str
) -> dict[str, str]:
    """Every rule a registration form breaks, by field (empty when all is well).

    A form shows all of them at once instead of one per submit.
    """
    problems: dict[str, str] = {}
    checks: list[Callable[[], str]] = [
        lambda: validate_username(username),
        lambda: validate_email(email),
        lambda: validate_display_name(display_name),
        lambda: validate_password(password, username=username, confirm=password_confirm),
    ]
    for check in checks:
        try:
            check()
        except InvalidInput as exc:
            problems.setdefault(exc.field, str(exc))
    return problems


# --- hashing ------------------------------------------------------------------------------


def _prehash(password: str) -> bytes:
    normal = unicodedata.normalize("NFC", password)
    digest = hashlib.sha256(normal.encode("utf-8", "surrogatepass")).digest()
    return base64.b64encode(digest)  # 44 bytes, no NUL: safe for bcrypt


def hash_password(password: str, *, rounds: int | None = None) -> str:
    rounds = rounds or get_settings().bcrypt_rounds
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), password_hash.encode("ascii"))
    except ValueError:  # malformed stored hash
        return False


def hash_cost(password_hash: str) -> int | None:
    """The bcrypt cost factor stored in a hash (``$2b$12$...`` -> 12)."""
    parts = password_hash.split("$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None


_DUMMY_HASH: dict[int, str] = {}


def _dummy_hash() -> str:
    """A real hash at the configured cost, so unknown usernames cost what known ones do."""
    rounds = get_settings().bcrypt_rounds
    if rounds not in _DUMMY_HASH:
        _DUMMY_HASH[rounds] = hash_password("dummy password for timing", rounds=rounds)
    return _DUMMY_HASH[rounds]


# --- data functions -----------------------------------------------------------------------


def get_by_username(db: Session, *, username: str, for_update: bool = False) -> User | None:
    """Case-insensitive lookup. A name no account can have (NUL bytes, 100 kB) is not sent
    to the database at all."""
    username = username.strip()
    if not USERNAME_RE.fullmatch(username):
        return None
    stmt = select(User).where(func.lower(User.username) == username.lower())
    if for_update:  # lock the row and act on its current values, not a cached copy
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return db.scalars(stmt).one_or_none()


def get_by_email(db: Session, *, email: str) -> User | None:
    try:
        validate_email(email)
    except InvalidInput:
        return None  # no account has it, and PostgreSQL might refuse the text
    stmt = select(User).where(func.lower(User.email) == email.strip().lower())
    return db.scalars(stmt).one_or_none()


def get_by_id(db: Session, *, user_id: uuid.UUID) -> User | None:
    return db.get(User, user_id)


def create_user(
    db: Session,
    *,
    username: str,
    email: str,
    display_name: str,
    password: str,
    role: str = "user",
    password_confirm: str | None = None,
) -> User:
    """Validate and insert a user (flushed, not committed). Raises InvalidInput or Conflict."""
    username = validate_username(username)
    email = validate_email(email)
    display_name = validate_display_name(display_name)
    validate_password(password, username=username, confirm=password_confirm)
    role = validate_role(role)
    if get_by_username(db, username=username) is not None:
        raise Conflict("That username is taken.", field="username")
    if get_by_email(db, email=email) is not None:
        raise Conflict("An account with that email already exists.", field="email")
    user = User(
        username=username,
        email=email,
        display_name=display_name,
        password_hash=hash_password(password),
        role=role,
    )
    try:
        with db.begin_nested():  # a concurrent twin loses cleanly, the caller's tx survives
            db.add(user)
    except IntegrityError:
        raise Conflict("That username or email is taken.") from None
    return user


# --- login ----------------------------------------------------------------------------------

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


def login(db: Session, *, username: str, password: str) -> LoginResult:
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
        verify_password(password, _dummy_hash())
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
        verify_password(password, _dummy_hash())
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
    verify_password(password, _dummy_hash())
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
    """The ``make run`` step (core.startup.EXTRA_STEPS) that prunes ``login_failures``."""
    from core import db as database

    with database.session_scope() as session:
        pruned = prune_login_failures(session)
    return f"failed logins of unknown names: {pruned} older than 30 days forgotten"


def authenticate(db: Session, *, username: str, password: str) -> Identity:
    """``login`` for callers that prefer an exception (the CLI's terminal client).

    Raises AuthenticationFailed, AccountLocked or AccountDisabled after writing the
    bookkeeping into ``db``; a caller that wants failures to count commits before it
    lets the error end its transaction.
    """
    result = login(db, username=username, password=password)
    if result.error is not None:
        raise result.error
    assert result.identity is not None
    return result.identity


# --- sessions -------------------------------------------------------------------------------


def session_identity(
    db: Session, *, user_id: uuid.UUID, issued_at: datetime, username: str | None = None
) -> Identity | None:
    """The identity behind a login (cookie or form) that is still valid, else None.

    Valid means: the user exists, is enabled, and the login happened no earlier than
    ``tokens_valid_after`` (moved by a password change, "log out everywhere", an admin's
    reset, disable or role change). ``username``, when given (from a cookie), must match.
    The router calls this on every run, so a revocation takes effect at the next click.
    """
    user = db.get(User, user_id)
    if user is None or user.disabled:
        return None
    if username is not None and username.lower() != user.username.lower():
        return None
    if issued_at < user.tokens_valid_after:
        return None
    return Identity.of(user)


def revoke_sessions(db: Session, *, user_id: uuid.UUID) -> datetime:
    """End every login of the user issued until now; returns the new cut-off."""
    user = db.get(User, user_id, with_for_update=True, populate_existing=True)
    if user is None:
        raise InvalidInput("user", "No such user.")
    cutoff = clock.now()
    # Never move backwards (a clock set back must not revive revoked cookies).
    user.tokens_valid_after = max(cutoff, user.tokens_valid_after)
    db.flush()
    return user.tokens_valid_after


def logout_everywhere(db: Session, *, user_id: uuid.UUID) -> None:
    """Sign the user out on every browser, this one included."""
    revoke_sessions(db, user_id=user_id)


def change_password(
    db: Session,
    *,
    user_id: uuid.UUID,
    current_password: str,
    new_password: str,
    confirm: str,
) -> datetime:
    """The user's own change: the current password is required; other logins end.

    Returns the new cut-off, so the caller can re-issue the current browser's login at it.
    """
    user = db.get(User, user_id, with_for_update=True, populate_existing=True)
    if user is None or user.disabled:
        raise AuthenticationFailed("Your session has ended; log in again.")
    if not verify_password(current_password, user.password_hash):
        raise InvalidInput("current_password", "The current password is wrong.")
    validate_password(new_password, username=user.username, confirm=confirm)
    if verify_password(new_password, user.password_hash):
        raise InvalidInput("password", "The new password must differ from the current one.")
    set_password(db, user=user, password=new_password)
    return user.tokens_valid_after


def set_password(db: Session, *, user: User, password: str, must_change: bool = False) -> None:
    """Store a new hash, clear any lockout, and end every older login of the user."""
    user.password_hash = hash_password(password)
    user.must_change_password = must_change
    user.failed_logins, user.locked_until = 0, None
    db.flush()
    revoke_sessions(db, user_id=user.id)
