"""Conversation session metadata in PostgreSQL, always scoped by owner.

A session that belongs to someone else is reported exactly like one that does not exist
(``NotFound``), so ids cannot be probed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import Select, func, select, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.orm import Session

from core import history, text
from core.clock import now
from core.errors import InvalidInput, NotFound
from core.models import ConversationSession, User

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


def title_from_prompt(prompt: str) -> str:
    """A session's title made from its first prompt; "New chat" when nothing printable is
    left (a prompt of zero-width or unassigned characters is still a prompt)."""
    try:
        return clean_title(prompt, truncate=True)
    except InvalidInput:
        return DEFAULT_TITLE


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
    """Record activity: counters go up, ``updated_at`` moves to now.

    One UPDATE that adds in the database (``count = count + n``), so turns ending at once in
    one session (two tabs) all count, where reading the row and writing back a sum would lose
    one; it is also the only round trip.
    """
    sid = parse_id(session_id)
    values: dict[str, Any] = {
        "message_count": ConversationSession.message_count + messages_added,
        "prompt_tokens": ConversationSession.prompt_tokens + prompt_tokens,
        "completion_tokens": ConversationSession.completion_tokens + completion_tokens,
        "updated_at": at or now(),
    }
    if model:
        values["model"] = model
    row = db.scalars(
        update(ConversationSession)
        .where(ConversationSession.id == sid, ConversationSession.user_id == user_id)
        .values(values)
        .returning(ConversationSession),
        execution_options={"populate_existing": True, "synchronize_session": False},
    ).one_or_none()
    if row is None:
        raise NotFound("Session not found.")
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


# --- browsing (the sessions page, notebooks) ------------------------------------------------
#
# ``user_id`` is one owner, or None for every user (admins only: see ``core.access.scope``).

MAX_PAGE = 200
MAX_AGE_DAYS = 36_500


@dataclass(frozen=True)
class Summary:
    """One row of the sessions list."""

    id: uuid.UUID
    user_id: uuid.UUID
    username: str
    title: str
    model: str
    message_count: int
    prompt_tokens: int
    completion_tokens: int
    created_at: datetime
    updated_at: datetime

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def describe(row: Summary, *, now: datetime, with_owner: bool = False) -> str:
    """The list's one-line description of a session, as escaped Markdown."""
    parts = [text.escape_markdown(row.username)] if with_owner else []
    parts += [
        text.escape_markdown(row.model or "no model yet"),
        f"{row.message_count:,} messages",
        f"{row.tokens:,} tokens",
        f"last activity {text.ago(row.updated_at, now=now)}",
    ]
    return " · ".join(parts)


def delete_warning(row: Summary) -> str:
    """What the page asks before deleting a session, as escaped Markdown."""
    return (
        f"Delete “{text.escape_markdown(row.title)}” and its {row.message_count:,} messages? "
        "This cannot be undone; usage figures stay."
    )


@dataclass(frozen=True)
class Page:
    items: list[Summary]
    total: int
    offset: int
    limit: int

    @property
    def has_next(self) -> bool:
        return self.offset + len(self.items) < self.total


def summary_select() -> Select[*tuple[Any, ...]]:
    return select(
        ConversationSession.id,
        ConversationSession.user_id,
        User.username,
        ConversationSession.title,
        ConversationSession.model,
        ConversationSession.message_count,
        ConversationSession.prompt_tokens,
        ConversationSession.completion_tokens,
        ConversationSession.created_at,
        ConversationSession.updated_at,
    ).join(User, User.id == ConversationSession.user_id)


def scoped(stmt: Select[*tuple[Any, ...]], user_id: uuid.UUID | None) -> Select[*tuple[Any, ...]]:
    return stmt if user_id is None else stmt.where(ConversationSession.user_id == user_id)


def browse(db: Session, *, user_id: uuid.UUID | None, limit: int = 25, offset: int = 0) -> Page:
    """A page of sessions, most recently active first (id breaks ties, so pages are stable)."""
    limit = max(1, min(int(limit), MAX_PAGE))
    offset = max(0, int(offset))
    stmt = (
        scoped(summary_select(), user_id)
        .order_by(ConversationSession.updated_at.desc(), ConversationSession.id.desc())
        .limit(limit)
        .offset(offset)
    )
    items = [Summary(*row) for row in db.execute(stmt)]
    total = int(
        db.scalar(scoped(select(func.count()).select_from(ConversationSession), user_id)) or 0
    )
    return Page(items, total, offset, limit)


def summary(db: Session, *, user_id: uuid.UUID, session_id: uuid.UUID | str) -> Summary:
    """One session's row, owner-scoped (``NotFound`` otherwise)."""
    sid = parse_id(session_id)
    stmt = summary_select().where(
        ConversationSession.id == sid, ConversationSession.user_id == user_id
    )
    row = db.execute(stmt).one_or_none()
    if row is None:
        raise NotFound("Session not found.")
    return Summary(*row)


def _summary_and_owner_name(db: Session, *, session_id: uuid.UUID | str) -> tuple[Summary, str]:
    """One session's row and its owner's display name, in one query. NOT owner-scoped, hence
    private: only ``core.access.open_session`` calls it, and decides who may see the row.
    ``NotFound`` for an unknown id."""
    sid = parse_id(session_id)
    stmt = summary_select().add_columns(User.display_name).where(ConversationSession.id == sid)
    row = db.execute(stmt).one_or_none()
    if row is None:
        raise NotFound("Session not found.")
    *fields, display_name = row
    return Summary(*fields), display_name or row.username


# --- bulk delete -------------------------------------------------------------------------


def _age_cutoff(days: int) -> datetime:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise InvalidInput("days", "Enter a whole number of days, 1 or more.")
    if days > MAX_AGE_DAYS:
        raise InvalidInput("days", f"Enter at most {MAX_AGE_DAYS:,} days.")
    return now() - timedelta(days=days)


def count_older_than(db: Session, *, user_id: uuid.UUID, days: int) -> int:
    """How many of the owner's sessions had no activity for ``days`` days (for the prompt)."""
    stmt = select(func.count()).where(
        ConversationSession.user_id == user_id,
        ConversationSession.updated_at < _age_cutoff(days),
    )
    return int(db.scalar(stmt) or 0)


def delete_older_than(db: Session, r: redis.Redis, *, user_id: uuid.UUID, days: int) -> int:
    """Delete the owner's sessions with no activity for ``days`` days, and their histories.

    Rows go first (flushed, in the caller's transaction), then the Redis keys in pipelined
    batches. Only this owner's rows can match. Returns how many were deleted.
    """
    cutoff = _age_cutoff(days)
    deleted = list(
        db.scalars(
            sql_delete(ConversationSession)
            .where(
                ConversationSession.user_id == user_id,
                ConversationSession.updated_at < cutoff,
            )
            .returning(ConversationSession.id)
        )
    )
    db.flush()
    for start in range(0, len(deleted), 500):
        pipe = r.pipeline(transaction=False)
        for sid in deleted[start : start + 500]:
            pipe.unlink(history.key(sid))
        pipe.execute()
    return len(deleted)
