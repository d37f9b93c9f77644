"""Chat content in Redis: one list ``session:<uuid>`` per conversation, one JSON object per message.

This is the storage layer, addressed by session id only. Ownership is checked one level up
(``core.sessions.messages`` and ``core.chat``), which is what pages and notebooks call.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any, Literal, NotRequired, TypedDict

import redis

from core.clock import now

Role = Literal["system", "user", "assistant"]
Status = Literal["complete", "truncated", "interrupted", "error"]


class Message(TypedDict):
    role: Role
    content: str
    ts: str  # ISO 8601, UTC
    stats: NotRequired[dict[str, Any]]
    status: NotRequired[Status]
    error: NotRequired[str]
    tools: NotRequired[list[dict[str, Any]]]  # tool cards of a reply (core.tools.ToolCard)
    sources: NotRequired[list[dict[str, Any]]]  # excerpts it was given (core.citations.Source)
    citations: NotRequired[dict[str, Any]]  # the check of its citations (core.citations.Check)
    version: NotRequired[int]  # 2, 3...: another version of the reply before it (core.versions)
    compare: NotRequired[bool]  # one of two models' replies to one prompt, side by side


def key(session_id: uuid.UUID | str) -> str:
    return f"session:{uuid.UUID(str(session_id))}"


def make_message(
    role: Role,
    content: str,
    *,
    stats: dict[str, Any] | None = None,
    status: Status | None = None,
    error: str | None = None,
    tools: list[dict[str, Any]] | None = None,
    sources: list[dict[str, Any]] | None = None,
    citations: dict[str, Any] | None = None,
    version: int | None = None,
    compare: bool = False,
) -> Message:
    message: Message = {"role": role, "content": content, "ts": now().isoformat()}
    if stats:
        message["stats"] = stats
    if status and status != "complete":
        message["status"] = status
    if error:
        message["error"] = error
    if tools:
        message["tools"] = tools
    if sources:
        message["sources"] = sources
    if citations is not None:
        message["citations"] = citations
    if version is not None and version > 1:
        message["version"] = version
    if compare:
        message["compare"] = True
    return message


def _encode(message: Message) -> str:
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (possible from a notebook, never from a browser) cannot be sent as
        # UTF-8; JSON's \u escapes carry it, and json.loads gives back the exact string. A high
        # surrogate directly followed by a low one comes back as the one character the pair
        # encodes (JSON reads the two escapes as UTF-16), as UTF-16 text would.
        text = json.dumps(message, ensure_ascii=True, separators=(",", ":"))
    return text


def _decode(raw: str | bytes) -> Message:
    value: Message = json.loads(raw)
    return value


def append(r: redis.Redis, *, session_id: uuid.UUID | str, message: Message) -> int:
    """Append one message; returns the list's new length."""
    return int(r.rpush(key(session_id), _encode(message)))


def read_all(r: redis.Redis, *, session_id: uuid.UUID | str) -> list[Message]:
    return [_decode(x) for x in r.lrange(key(session_id), 0, -1)]


def read_last(r: redis.Redis, *, session_id: uuid.UUID | str, n: int) -> list[Message]:
    """The newest ``n`` messages, oldest first."""
    if n <= 0:
        return []
    return [_decode(x) for x in r.lrange(key(session_id), -n, -1)]


def read_range(
    r: redis.Redis, *, session_id: uuid.UUID | str, start: int, stop: int
) -> list[Message]:
    """Messages ``start``..``stop`` inclusive (Redis LRANGE semantics)."""
    return [_decode(x) for x in r.lrange(key(session_id), start, stop)]


def read_many(
    r: redis.Redis, *, session_ids: Iterable[uuid.UUID | str]
) -> dict[str, list[Message]]:
    """Whole histories of many sessions in one round trip (search, export)."""
    ids = [str(uuid.UUID(str(s))) for s in session_ids]
    pipe = r.pipeline(transaction=False)
    for sid in ids:
        pipe.lrange(key(sid), 0, -1)
    return {sid: [_decode(x) for x in raw] for sid, raw in zip(ids, pipe.execute(), strict=True)}


def count(r: redis.Redis, *, session_id: uuid.UUID | str) -> int:
    return int(r.llen(key(session_id)))


def delete(r: redis.Redis, *, session_id: uuid.UUID | str) -> None:
    r.unlink(key(session_id))


def append_and_read_last(
    r: redis.Redis, *, session_id: uuid.UUID | str, message: Message, n: int
) -> tuple[list[Message], int]:
    """Append one message and read the newest ``n`` (it included) in one round trip; also
    the list's length then (so the messages' positions stay known while others append)."""
    pipe = r.pipeline(transaction=True)
    pipe.rpush(key(session_id), _encode(message))
    pipe.lrange(key(session_id), -max(1, n), -1)
    length, raw = pipe.execute()
    return [_decode(x) for x in raw], int(length)


def read_last_at(
    r: redis.Redis, *, session_id: uuid.UUID | str, n: int
) -> tuple[list[Message], int]:
    """The newest ``n`` messages, oldest first, and the list's length then (one round trip)."""
    pipe = r.pipeline(transaction=True)
    pipe.lrange(key(session_id), -max(1, n), -1)
    pipe.llen(key(session_id))
    raw, length = pipe.execute()
    return [_decode(x) for x in raw], int(length)
