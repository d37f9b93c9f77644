"""User accounts: validation rules, registration, lookups, whether a login is still valid,
and the user's own password changes. (Logging in is core.login, hashing core.passwords,
administrators' actions core.admin.)
"""

from __future__ import annotations

import math
import re
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import clock, throttle
from core.config import Settings, get_settings
from core.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound, TooManyRequests
from core.models import ROLES, LoginAttempt, LoginToken, User
from core.passwords import hash_password, verify_password

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
REGISTRATION_WINDOW = 3600.0  # seconds: REGISTRATION_ADDRESS_MAX counts per hour
REGISTRATION_WINDOW = 3600.0  # seconds: REGISTRATION_ADDRESS_MAX counts per hour


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


# Scripts that are written together: Japanese mixes kanji with both kana, Korean hangul with
# hanja. Any other mix inside one part of an address is how look-alikes are made.
_SCRIPT_FAMILIES = {
    "HIRAGANA": "CJK",
    "KATAKANA": "CJK",
    "KATAKANA-HIRAGANA": "CJK",  # the prolonged sound mark
    "HANGUL": "CJK",
    "CJK": "CJK",
}


def _script(ch: str) -> str | None:
    """A letter's script, from its Unicode name ("CYRILLIC SMALL LETTER O" -> CYRILLIC); None
    for digits, punctuation and symbols, which belong to every script."""
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0] if name else "UNKNOWN"
    return _SCRIPT_FAMILIES.get(first, first)


def mixed_scripts(part: str) -> bool:
    """True when the letters of ``part`` come from more than one script (Latin with a Cyrillic
    "o", say): the mark of a look-alike of another address."""
    return len({s for s in map(_script, part) if s is not None}) > 1


def validate_email(email: str) -> str:
    """The address as stored: NFKC-normalised (full-width and compatibility letters become
    plain ones) and lower-case, so look-alikes of one address are one account; a local part or
    domain label mixing scripts is refused."""
    email = unicodedata.normalize("NFKC", email.strip()).lower()
    if len(email) > 254 or _has_control(email) or not EMAIL_RE.fullmatch(email):
        raise InvalidInput("email", "Enter a valid email address, such as name@example.com.")
    local, _, domain = email.rpartition("@")
    if any(mixed_scripts(part) for part in [local, *domain.split(".")]):
        raise InvalidInput(
            "email",
            "This email address mixes alphabets (for example a Cyrillic letter among Latin "
            "ones); type it in one alphabet.",
        )
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
        normal = validate_email(email)
    except InvalidInput:
        return None  # no account has it, and PostgreSQL might refuse the text
    stmt = select(User).where(func.lower(User.email) == normal)
    return db.scalars(stmt).one_or_none()


def get_by_id(db: Session, *, user_id: uuid.UUID) -> User | None:
    return db.get(User, user_id)


def email_of(db: Session, *, user_id: uuid.UUID) -> str:
    """The user's email address (shown on their Account page)."""
    email = db.scalar(select(User.email).where(User.id == user_id))
    if email is None:
        raise NotFound("User not found.")
    return str(email)


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


def registration_limit(settings: Settings | None = None) -> throttle.Limit:
    return throttle.Limit(
        "register", (settings or get_settings()).registration_address_max, REGISTRATION_WINDOW
    )


def register(
    db: Session,
    r: redis.Redis,
    *,
    address: str,
    username: str,
    email: str,
    display_name: str,
    password: str,
    password_confirm: str,
) -> User:
    """Self-registration from ``address``: ``create_user`` within REGISTRATION_ADDRESS_MAX
    accounts per address and hour (``TooManyRequests`` beyond, before anything is checked)."""
    limit = registration_limit()
    wait = throttle.retry_after(r, limit, address)
    if wait is not None:
        minutes = max(1, math.ceil(wait / 60))
        raise TooManyRequests(
            "Too many accounts were registered from your network: try again in "
            f"{minutes} minute{'s' if minutes != 1 else ''}."
        )
    user = create_user(
        db,
        username=username,
        email=email,
        display_name=display_name,
        password=password,
        password_confirm=password_confirm,
    )
    throttle.hit(r, limit, address)
    return user


# --- logins -------------------------------------------------------------------------------


def issue_login_token(
    db: Session, *, user_id: uuid.UUID, issued_at: datetime, expires_at: datetime
) -> uuid.UUID:
    """A new login's row (the id its cookie carries), so Logout can end exactly this login."""
    token = LoginToken(user_id=user_id, created_at=issued_at, expires_at=expires_at)
    db.add(token)
    db.flush()
    return token.id


def revoke_login_token(db: Session, *, user_id: uuid.UUID, token_id: uuid.UUID) -> None:
    """End one login (Logout): its cookie, and any copy of it, no longer signs in."""
    db.execute(
        update(LoginToken)
        .where(
            LoginToken.id == token_id,
            LoginToken.user_id == user_id,
            LoginToken.revoked_at.is_(None),
        )
        .values(revoked_at=clock.now())
    )


def prune_login_tokens(db: Session) -> int:
    """Forget login tokens that expired more than a day ago; returns how many."""
    cutoff = clock.now() - timedelta(days=1)
    result = db.execute(delete(LoginToken).where(LoginToken.expires_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


def clear_login_attempts(db: Session, *, name: str) -> None:
    """Forget every failed login and lock for a name (an admin's unlock, a new password)."""
    db.execute(delete(LoginAttempt).where(LoginAttempt.name == name.lower()))


def session_identity(
    db: Session,
    *,
    user_id: uuid.UUID,
    token_id: uuid.UUID,
    issued_at: datetime,
    username: str | None = None,
) -> Identity | None:
    """The identity behind a login (cookie or form) that is still valid, else None.

    Valid means: the user exists, is enabled, the login's token is theirs, unexpired and not
    revoked (Logout revokes it), and the login happened no earlier than ``tokens_valid_after``
    (moved by a password change, "log out everywhere", an admin's reset, disable or role
    change). ``username``, when given (from a cookie), must match. The router calls this on
    every run (one query), so a revocation takes effect at the next click.
    """
    found = db.execute(
        select(User, LoginToken.revoked_at, LoginToken.expires_at)
        .join(LoginToken, LoginToken.user_id == User.id)
        .where(User.id == user_id, LoginToken.id == token_id)
    ).one_or_none()
    if found is None:
        return None
    user, revoked_at, expires_at = found
    if user.disabled or revoked_at is not None or expires_at <= clock.now():
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
    db.execute(
        update(LoginToken)
        .where(LoginToken.user_id == user_id, LoginToken.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )


def change_display_name(db: Session, *, user_id: uuid.UUID, display_name: str) -> str:
    """The user renames themselves (the name others see); returns the name as stored."""
    name = validate_display_name(display_name)
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("User not found.")
    user.display_name = name
    db.flush()
    return name


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
    clear_login_attempts(db, name=user.username)
    db.flush()
    revoke_sessions(db, user_id=user.id)
