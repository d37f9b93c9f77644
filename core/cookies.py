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
    token_id: uuid.UUID  # the login_tokens row: Logout revokes it
    device_id: uuid.UUID | None  # this browser's device id (see the device part below)


def to_micros(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (no float rounding)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def issue_token(
    *,
    username: str,
    user_id: uuid.UUID,
    token_id: uuid.UUID,
    issued_at: datetime,
    expires_at: datetime,
    key: str,
    device_id: uuid.UUID | None = None,
) -> str:
    """A cookie token the library accepts (``username``, ``exp_date``) plus Ledger's claims,
    and, with ``device_id``, the browser's device part (which outlives the login)."""
    payload: dict[str, object] = {
        "username": username.lower(),
        "exp_date": expires_at.timestamp(),
        "uid": str(user_id),
        "tid": str(token_id),
        "iat_us": to_micros(issued_at),
    }
    if device_id is not None:
        payload |= _device_claims(device_id, issued_at)
    return jwt.encode(payload, key, algorithm=ALGORITHM)


def _verified(token: str | None, key: str) -> dict[str, object] | None:
    """The payload of a token signed with ``key``; None for anything else (never raises)."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        return None
    try:
        payload = jwt.decode(token, key, algorithms=[ALGORITHM])
    except jwt.PyJWTError:
        return None
    return payload if isinstance(payload, dict) else None


def read_token(token: str, *, key: str, now: datetime) -> TokenClaims | None:
    """The claims of a genuine, unexpired token; None for anything else (never raises)."""
    payload = _verified(token, key)
    if payload is None:
        return None
    username, uid, tid, iat, exp = (
        payload.get("username"),
        payload.get("uid"),
        payload.get("tid"),
        payload.get("iat_us"),
        payload.get("exp_date"),
    )
    if not isinstance(username, str) or not isinstance(uid, str) or not isinstance(tid, str):
        return None
    if not isinstance(iat, int) or isinstance(iat, bool):
        return None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    try:
        user_id, token_id = uuid.UUID(uid), uuid.UUID(tid)
        issued_at = from_micros(iat)
        expires_at = datetime.fromtimestamp(exp, UTC)
    except (ValueError, OverflowError, OSError):
        return None
    if expires_at <= now or issued_at > now + timedelta(minutes=5):
        return None
    device_id = _device_of(payload, name=username, now=now)
    return TokenClaims(username, user_id, issued_at, expires_at, token_id, device_id)


# --- the device part -----------------------------------------------------------------------
#
# A browser that signed in as a name keeps a device id for it (a year): its failed logins for
# that name then count on their own, so someone guessing passwords elsewhere cannot lock the
# owner out of a browser they have used before (OWASP's "device cookies"). The id travels in
# the login cookie itself, and Logout rewrites that cookie to the device part alone instead of
# deleting it: one cookie, written by one browser component, so no second component can lose
# a race with a rerun or a click.

DEVICE_DAYS = 365


def _device_claims(device_id: uuid.UUID, issued_at: datetime) -> dict[str, object]:
    return {
        "dev": str(device_id),
        "dev_until_us": to_micros(issued_at + timedelta(days=DEVICE_DAYS)),
    }


def issue_device_token(*, name: str, device_id: uuid.UUID, now: datetime, key: str) -> str:
    """The cookie's value once its login has ended: the device part alone (no login in it)."""
    payload = {"kind": "device", "username": name.lower(), **_device_claims(device_id, now)}
    return jwt.encode(payload, key, algorithm=ALGORITHM)


def _device_of(payload: dict[str, object], *, name: str, now: datetime) -> uuid.UUID | None:
    until, dev = payload.get("dev_until_us"), payload.get("dev")
    if payload.get("username") != name.strip().lower():
        return None
    if not isinstance(until, int) or isinstance(until, bool) or not isinstance(dev, str):
        return None
    try:
        device_id = uuid.UUID(dev)
        expired = from_micros(until) <= now
    except (ValueError, OverflowError):
        return None
    return None if expired else device_id


def read_device_token(token: str | None, *, name: str, key: str, now: datetime) -> uuid.UUID | None:
    """The device id in a genuine cookie (a login, or the device part left by Logout) issued
    for ``name`` and not past its year; else None. The login itself may be over."""
    payload = _verified(token, key)
    return None if payload is None else _device_of(payload, name=name, now=now)
