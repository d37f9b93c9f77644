"""User accounts: validation rules, password hashing, creation and lookup.

Passwords are hashed with bcrypt over a SHA-256 pre-hash, so every character of a long
passphrase counts (bcrypt alone ignores bytes past 72) and no input length can crash it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
import uuid
from dataclasses import dataclass

import bcrypt
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.config import get_settings
from core.errors import AuthenticationFailed, Conflict, InvalidInput
from core.models import ROLES, User

USERNAME_RE = re.compile(r"^[A-Za-z0-9._-]{3,32}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
MAX_DISPLAY_NAME = 100


@dataclass(frozen=True)
class Identity:
    """Who is signed in: what pages and core functions need, without the ORM row."""

    id: uuid.UUID
    username: str
    display_name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def of(cls, user: User) -> Identity:
        return cls(user.id, user.username, user.display_name, user.role)


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
    if len(email) > 254 or not EMAIL_RE.fullmatch(email) or _has_control(email):
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
    if username and password.strip().casefold() == username.strip().casefold():
        raise InvalidInput("password", "Password must not be the same as the username.")
    if confirm is not None and confirm != password:
        raise InvalidInput("password_confirm", "The two passwords do not match.")
    return password


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput("role", f"Role must be one of: {', '.join(ROLES)}.")
    return role


# --- hashing ------------------------------------------------------------------------------


def _prehash(password: str) -> bytes:
    digest = hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()
    return base64.b64encode(digest)  # 44 bytes, no NUL: safe for bcrypt


def hash_password(password: str, *, rounds: int | None = None) -> str:
    rounds = rounds or get_settings().bcrypt_rounds
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), password_hash.encode("ascii"))
    except ValueError:  # malformed stored hash
        return False


# --- data functions -----------------------------------------------------------------------


def get_by_username(db: Session, *, username: str) -> User | None:
    """Case-insensitive lookup. A name no account can have (NUL bytes, lone surrogates, any
    length) is not sent to PostgreSQL, which would refuse it with an error."""
    if not USERNAME_RE.fullmatch(username.strip()):
        return None
    stmt = select(User).where(func.lower(User.username) == username.strip().lower())
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
        raise Conflict("That username is taken.")
    if get_by_email(db, email=email) is not None:
        raise Conflict("An account with that email already exists.")
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


_DUMMY_HASH: dict[int, str] = {}


def _dummy_hash() -> str:
    """A real hash at the configured cost, so unknown usernames cost what known ones do."""
    rounds = get_settings().bcrypt_rounds
    if rounds not in _DUMMY_HASH:
        _DUMMY_HASH[rounds] = hash_password("dummy password for timing", rounds=rounds)
    return _DUMMY_HASH[rounds]


def authenticate(db: Session, *, username: str, password: str) -> Identity:
    """Check a username and password; the failure never says which of the two was wrong.

    (Lockout and login bookkeeping are added by the accounts feature.)
    """
    user = get_by_username(db, username=username[:64])
    if user is None:
        verify_password(password, _dummy_hash())
        raise AuthenticationFailed("Wrong username or password.")
    if not verify_password(password, user.password_hash) or user.disabled:
        raise AuthenticationFailed("Wrong username or password.")
    return Identity.of(user)
