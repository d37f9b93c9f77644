"""A reply in flight, kept in Redis as it grows, so a process that dies mid-reply loses nothing.

While a turn streams, its reply so far is written to ``draft:<session>`` (when the turn starts,
then once a second by a thread of the process writing it, when it changed) with a lease
``draft-lease:<session>`` that the same thread renews. When the turn ends, the reply is saved
as always and the draft deleted. A process killed mid-reply (SIGKILL, out of memory, the
machine lost) leaves the draft and lets its lease expire (LEASE_SECONDS); whichever process
next opens the conversation (``recover``) appends the draft to the history, marked
interrupted and saying why, in one Redis script (two readers cannot both append it), and
records its usage row and the session's counts in PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core import history, metrics, quota, sessions, usage_log
from core.errors import LedgerError

LEASE_SECONDS = 5  # a draft whose writer has not renewed its lease for this long is orphaned
BEAT_SECONDS = 1.0  # how often a streaming reply's draft is rewritten (when it changed)
STOPPED = "The app process writing this reply stopped before it ended; this is the reply so far."

log = logging.getLogger(__name__)

_RECOVER = """
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local message = redis.call('HGET', KEYS[1], 'message')
if not message then return false end
local usage = redis.call('HGET', KEYS[1], 'usage')
redis.call('RPUSH', KEYS[3], message)
redis.call('DEL', KEYS[1])
return usage
"""


_scripts: list[Any] = []


def _script(r: redis.Redis) -> Any:
    """The recovery script as a redis-py Script: run by its SHA (EVALSHA), sent to a server
    only the first time that server does not know it. Any client may run it."""
    if not _scripts:
        _scripts.append(r.register_script(_RECOVER))
    return _scripts[0]


SLOTS = 2  # replies of one conversation that may stream at once (a comparison's two)


def _suffix(slot: int) -> str:
    return "" if slot == 1 else f":{slot}"


def draft_key(session_id: uuid.UUID | str, slot: int = 1) -> str:
    return f"draft:{uuid.UUID(str(session_id))}{_suffix(slot)}"


def lease_key(session_id: uuid.UUID | str, slot: int = 1) -> str:
    return f"draft-lease:{uuid.UUID(str(session_id))}{_suffix(slot)}"


Slot = tuple[uuid.UUID, int]  # a conversation and which of its streaming replies


Snapshot = Callable[[], tuple[history.Message, dict[str, Any]]]


class _Heartbeat:
    """One thread per process writing the drafts of the replies it streams, once a second
    (the text only when it changed) and renewing their leases."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[Slot, tuple[redis.Redis, Snapshot]] = {}
        self._thread: threading.Thread | None = None

    def hold(self, r: redis.Redis, slot: Slot, snapshot: Snapshot) -> None:
        with self._lock:
            self._active[slot] = (r, snapshot)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="drafts", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        written: dict[Slot, str] = {}
        while True:
            time.sleep(BEAT_SECONDS)
            # Under the lock: a draft is never written again after ``finish`` deleted it.
            with self._lock:
                for slot, (r, snapshot) in self._active.items():
                    message, usage = snapshot()
                    changed = written.get(slot) != message["content"]
                    # Redis down: the turn says so when it saves; there is nothing to renew.
                    with contextlib.suppress(redis.RedisError, OSError):
                        _store(r, slot, message if changed else None, usage)
                        written[slot] = message["content"]
                for gone in set(written) - set(self._active):
                    written.pop(gone, None)

    def forget(self, r: redis.Redis, slot: Slot) -> None:
        """Delete the draft and stop writing it; a Redis error leaves both as they were."""
        with self._lock:
            r.delete(draft_key(*slot), lease_key(*slot))
            self._active.pop(slot, None)


_heartbeat = _Heartbeat()


def _store(
    r: redis.Redis,
    slot: Slot,
    message: history.Message | None,
    usage: dict[str, Any],
) -> None:
    pipe = r.pipeline(transaction=True)
    pipe.hset(draft_key(*slot), "usage", json.dumps(usage, ensure_ascii=True))
    if message is not None:
        pipe.hset(draft_key(*slot), "message", json.dumps(message, ensure_ascii=True))
    pipe.set(lease_key(*slot), "1", ex=LEASE_SECONDS)
    pipe.execute()


def track(r: redis.Redis, session_id: uuid.UUID, snapshot: Snapshot, *, slot: int = 1) -> None:
    """Keep what ``snapshot()`` returns (the reply so far, marked interrupted with STOPPED,
    and what its usage row would say) as the draft: now, then once a second until
    ``finish``. ``slot`` tells apart two replies streaming in one conversation at once.
    Raises the first write's Redis error: the caller decides."""
    message, usage = snapshot()
    _store(r, (session_id, slot), message, usage)
    _heartbeat.hold(r, (session_id, slot), snapshot)


def finish(r: redis.Redis, session_id: uuid.UUID, *, slot: int = 1) -> None:
    """The reply is saved: forget its draft. Should the delete fail (Redis down), the draft
    stays alive and the next ``finish`` (from ``save_again``) deletes it: left without a
    lease, ``recover`` would add a second copy of a reply that is saved."""
    with contextlib.suppress(redis.RedisError, OSError):
        _heartbeat.forget(r, (session_id, slot))


def recover(db: Session, r: redis.Redis, *, session_id: uuid.UUID) -> bool:
    """Save the drafts of replies whose process died (their leases expired): appended to the
    history as interrupted, their usage rows and the session's counts written. True if any."""
    found = False
    for slot in range(1, SLOTS + 1):
        found = _recover_slot(db, r, session_id, slot) or found
    return found


def _recover_slot(db: Session, r: redis.Redis, session_id: uuid.UUID, slot: int) -> bool:
    keys = [draft_key(session_id, slot), lease_key(session_id, slot), history.key(session_id)]
    try:
        usage_raw = _script(r)(keys=keys, client=r)  # EVALSHA: the script is sent once
    except (redis.RedisError, OSError):
        return False  # reading the history will say what is wrong with Redis
    if not usage_raw:
        return False
    metrics.REPLIES_RECOVERED.inc()
    usage = json.loads(usage_raw)
    try:
        sessions.touch(
            db,
            user_id=uuid.UUID(usage["user_id"]),
            session_id=session_id,
            # The prompt and this reply (the turn never counted them); a reply regenerated,
            # or a comparison's second one, adds itself only.
            messages_added=int(usage.get("messages", 2)),
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
            model=usage["model"],
        )
        usage_log.record_call(
            db,
            user_id=uuid.UUID(usage["user_id"]),
            session_id=session_id,
            model=usage["model"],
            backend=usage["backend"],
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
            ttft_ms=usage.get("ttft_ms"),
            duration_ms=float(usage["duration_ms"]),
            outcome="error",
            error=STOPPED,
            tool_calls=int(usage.get("tool_calls", 0)),
        )
        held = usage.get("reservation")
        quota.release(db, uuid.UUID(held) if held else None, user_id=uuid.UUID(usage["user_id"]))
        db.commit()
    except (SQLAlchemyError, LedgerError, KeyError, ValueError) as exc:
        db.rollback()
        log.warning("a recovered reply's usage row could not be written: %s", exc)
    return True
