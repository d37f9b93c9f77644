"""Conversation session metadata in PostgreSQL, always scoped by owner.

A session that belongs to someone else is reported exactly like one that does not exist
(``NotFound``), so ids cannot be probed.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import redis
from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import history
from core.clock import now
from core.errors import InvalidInput, NotFound
from core.models import ConversationSession

MAX_TITLE = 200
DEFAULT_TITLE = "New chat"


def clean_title(title: str, *, truncate: bool = False) -> str:
    """Titles are one line of printable text, at most 200 characters.

    ``truncate`` is for titles made from a prompt; a title typed by a user that is too long is
    refused instead, so it is never silently changed.
    """
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in title).split())
    if not flat:
        raise InvalidInput("title", "Title must not be empty.")
    if len(flat) > MAX_TITLE:
        if not truncate:
            raise InvalidInput("title", f"Title must be at most {MAX_TITLE} characters.")
        flat = flat[: MAX_TITLE - 1].rstrip() + "…"
    return flat


def parse_id(value: str | uuid.UUID | None) -> uuid.UUID:
    """A session id from a URL or form; anything malformed is simply not found."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except (ValueError, AttributeError):
        raise NotFound("Session not found.") from None


def create(
    db: Session, *, user_id: uuid.UUID, title: str = DEFAULT_TITLE, model: str = ""
) -> ConversationSession:
    row = ConversationSession(user_id=user_id, title=clean_title(title, truncate=True), model=model)
    db.add(row)
    db.flush()
    return row


def get_for_owner(
    db: Session, *, user_id: uuid.UUID, session_id: uuid.UUID | str
) -> ConversationSession:
    sid = parse_id(session_id)
    row = db.scalars(
        select(ConversationSession).where(
            ConversationSession.id == sid, ConversationSession.user_id == user_id
        )
    ).one_or_none()
    if row is None:
        raise NotFound("Session not found.")
    return row


def list_for_owner(
    db: Session, *, user_id: uuid.UUID, limit: int = 50, offset: int = 0
) -> list[ConversationSession]:
    """A page of the owner's sessions, most recently active first."""
    stmt = (
        select(ConversationSession)
        .where(ConversationSession.user_id == user_id)
        .order_by(ConversationSession.updated_at.desc(), ConversationSession.id.desc())
        .limit(max(1, min(limit, 500)))
        .offset(max(0, offset))
    )
    return list(db.scalars(stmt))


def count_for_owner(db: Session, *, user_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(ConversationSession.user_id == user_id)
    return int(db.scalar(stmt) or 0)


def rename(
    db: Session, *, user_id: uuid.UUID, session_id: uuid.UUID | str, title: str
) -> ConversationSession:
    row = get_for_owner(db, user_id=user_id, session_id=session_id)
    row.title = clean_title(title)
    db.flush()
    return row


def touch(
    db: Session,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID | str,
    messages_added: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    model: str | None = None,
    at: datetime | None = None,
) -> ConversationSession:
    """Record activity: counters go up, ``updated_at`` moves to now."""
    row = get_for_owner(db, user_id=user_id, session_id=session_id)
    row.message_count += messages_added
    row.prompt_tokens += prompt_tokens
    row.completion_tokens += completion_tokens
    if model:
        row.model = model
    row.updated_at = at or now()
    db.flush()
    return row


def delete(db: Session, r: redis.Redis, *, user_id: uuid.UUID, session_id: uuid.UUID | str) -> None:
    """Delete the row (usage rows keep their figures, session unset) and its Redis history.

    The row goes first and is flushed, so a refused delete leaves the history intact.
    """
    row = get_for_owner(db, user_id=user_id, session_id=session_id)
    sid = row.id
    db.execute(
        sql_delete(ConversationSession).where(
            ConversationSession.id == sid, ConversationSession.user_id == user_id
        )
    )
    db.flush()
    db.expunge(row)
    history.delete(r, session_id=sid)


def messages(
    db: Session,
    r: redis.Redis,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID | str,
    last: int | None = None,
) -> list[history.Message]:
    """The owner's conversation (all, or the newest ``last``), oldest first."""
    row = get_for_owner(db, user_id=user_id, session_id=session_id)
    if last is None:
        return history.read_all(r, session_id=row.id)
    return history.read_last(r, session_id=row.id, n=last)
