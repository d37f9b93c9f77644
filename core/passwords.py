"""Password hashing: bcrypt over a SHA-256 pre-hash of the password's NFC form.

So every character of a long passphrase counts (bcrypt alone ignores bytes past 72), no input
length can crash it, and an accented letter typed on any keyboard gives the same hash. The
dummy hash lets a check of an unknown name cost exactly what a real account's costs.
"""

from __future__ import annotations

import base64
import hashlib
import unicodedata

import bcrypt

from core.config import get_settings


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


def dummy_hash() -> str:
    """A real hash at the configured cost, so unknown usernames cost what known ones do."""
    rounds = get_settings().bcrypt_rounds
    if rounds not in _DUMMY_HASH:
        _DUMMY_HASH[rounds] = hash_password("dummy password for timing", rounds=rounds)
    return _DUMMY_HASH[rounds]
