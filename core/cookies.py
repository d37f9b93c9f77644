"""The login cookie: its signing key and the token inside it.

streamlit-authenticator stores a JWT (HS256) in the browser. The key that signs it comes from
AUTH_COOKIE_KEY, or, when that is unset, from a random key generated once into
``DATA_DIR/auth_cookie.key`` (mode 0600) and reused, so cookies survive restarts.

Besides the library's claims (``username``, ``exp_date``) Ledger's tokens carry the user's id
(``uid``) and the issue time in microseconds (``iat_us``). The gate refuses a token unless its
user still exists, is enabled and ``iat_us`` is not older than ``users.tokens_valid_after``
(see ``core.accounts.session_identity``), so a password change or "log out everywhere" ends
older cookies. ``iat_us`` is a private claim on purpose: PyJWT validates a standard ``iat``
against the machine clock, and the library would not catch the error it raises.
"""

from __future__ import annotations

import os
import secrets
import stat
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from core.config import Settings, cookie_key_problem, get_settings
from core.datadir import prepare_data_dir, real_path
from core.errors import ConfigError

KEY_FILE = "auth_cookie.key"
ALGORITHM = "HS256"

_lock = threading.Lock()
_file_keys: dict[Path, str] = {}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- the key -------------------------------------------------------------------------------


def key_path(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return real_path(settings.data_dir) / KEY_FILE


def cookie_key(settings: Settings | None = None) -> str:
    """The key that signs login cookies: AUTH_COOKIE_KEY, else the generated one."""
    settings = settings or get_settings()
    if settings.auth_cookie_key is not None:
        return settings.auth_cookie_key.get_secret_value()
    return ensure_key_file(settings)[0]


def ensure_key_file(settings: Settings | None = None) -> tuple[str, bool]:
    """(key, created now): read ``DATA_DIR/auth_cookie.key``, generating it first if missing.

    The file is written to a temporary name and then linked into place, so two processes
    starting together agree on one key and nobody ever reads a half-written file.
    """
    settings = settings or get_settings()
    path = key_path(settings)
    with _lock:
        cached = _file_keys.get(path)
        if cached is not None and path.exists():
            return cached, False
        prepare_data_dir(path.parent)
        created = False
        if not path.exists():
            created = _publish_new_key(path)
        key = _read_key_file(path)
        _file_keys[path] = key
        return key, created


def _publish_new_key(path: Path) -> bool:
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False  # another process won the race: use its key
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _read_key_file(path: Path) -> str:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)  # nobody but the owner may read a signing key
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"The login cookie key file {path} cannot be read ({exc.strerror}); fix its "
            "permissions, or set AUTH_COOKIE_KEY."
        ) from None
    problem = cookie_key_problem(key)
    if problem:
        raise ConfigError(
            f"The login cookie key in {path} {problem}. Delete the file to have a new one "
            "generated (everyone will have to log in again), or set AUTH_COOKIE_KEY."
        )
    return key


def prepare_key() -> str:
    """The ``make run`` step (core.startup.EXTRA_STEPS): make sure a cookie key exists."""
    settings = get_settings()
    if settings.auth_cookie_key is not None:
        return "login cookie key: AUTH_COOKIE_KEY"
    _, created = ensure_key_file(settings)
    state = "generated" if created else "reused"
    return f"login cookie key: {state} {key_path(settings)} (mode 0600)"


# --- the token -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenClaims:
    username: str
    user_id: uuid.UUID
    issued_at: datetime
    expires_at: datetime


def to_micros(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (no float rounding)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def issue_token(
    *, username: str, user_id: uuid.UUID, issued_at: datetime, expires_at: datetime, key: str
) -> str:
    """A cookie token the library accepts (``username``, ``exp_date``) plus Ledger's claims."""
    payload = {
        "username": username.lower(),
        "exp_date": expires_at.timestamp(),
        "uid": str(user_id),
        "iat_us": to_micros(issued_at),
    }
    return jwt.encode(payload, key, algorithm=ALGORITHM)


def read_token(token: str, *, key: str, now: datetime) -> TokenClaims | None:
    """The claims of a genuine, unexpired token; None for anything else (never raises)."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        return None
    try:
        payload = jwt.decode(token, key, algorithms=[ALGORITHM])
    except jwt.PyJWTError:
        return None
    username, uid, iat, exp = (
        payload.get("username"),
        payload.get("uid"),
        payload.get("iat_us"),
        payload.get("exp_date"),
    )
    if not isinstance(username, str) or not isinstance(uid, str):
        return None
    if not isinstance(iat, int) or isinstance(iat, bool):
        return None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    try:
        user_id = uuid.UUID(uid)
        issued_at = from_micros(iat)
        expires_at = datetime.fromtimestamp(exp, UTC)
    except (ValueError, OverflowError, OSError):
        return None
    if expires_at <= now or issued_at > now + timedelta(minutes=5):
        return None
    return TokenClaims(username, user_id, issued_at, expires_at)
