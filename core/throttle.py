"""Limits per client address, shared by every app process: failed logins and registrations.

A fixed window of ``window_seconds`` (aligned to core.clock's time, so tests can move it) holds
a counter per limit and address in Redis; the key expires after two windows, so nothing is
kept for an address that stopped. ``retry_after`` answers before the work is done (a refused
attempt writes nothing anywhere else), ``hit`` counts one use after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

from core import clock

MAX_ADDRESS = 64  # IPv6 with a zone fits; anything longer is cut (it is a key, not shown)


@dataclass(frozen=True)
class Limit:
    name: str  # "login" (failed logins), "register" (accounts created)
    limit: int  # uses per window; the next one is refused
    window_seconds: float


def _window(limit: Limit) -> tuple[int, float]:
    """(the current window's number, seconds until it ends)."""
    now = clock.now().timestamp()
    index = math.floor(now / limit.window_seconds)
    return index, (index + 1) * limit.window_seconds - now


def _key(limit: Limit, address: str, index: int) -> str:
    return f"throttle:{limit.name}:{address[:MAX_ADDRESS]}:{index}"


def retry_after(r: redis.Redis, limit: Limit, address: str) -> float | None:
    """Seconds until ``address`` may go on when it has used up ``limit``; None while it may."""
    index, left = _window(limit)
    used = r.get(_key(limit, address, index))
    return left if used is not None and int(used) >= limit.limit else None


def hit(r: redis.Redis, limit: Limit, address: str) -> int:
    """Count one use by ``address`` in the current window; returns the count so far."""
    index, _ = _window(limit)
    key = _key(limit, address, index)
    pipe = r.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, math.ceil(2 * limit.window_seconds))
    count, _ = pipe.execute()
    return int(count)
