"""Conversation session metadata in PostgreSQL, always scoped by owner.

A session that belongs to someone else is reported exactly like one that does not exist
(``NotFound``), so ids cannot be probed.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
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
MAX_SEARCH_SESSIONS = 5000
SEARCH_BATCH = 200
MAX_MESSAGE_MATCHES = 3
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


def _summary_select() -> Select[*tuple[Any, ...]]:
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


def _scoped(stmt: Select[*tuple[Any, ...]], user_id: uuid.UUID | None) -> Select[*tuple[Any, ...]]:
    return stmt if user_id is None else stmt.where(ConversationSession.user_id == user_id)


def browse(db: Session, *, user_id: uuid.UUID | None, limit: int = 25, offset: int = 0) -> Page:
    """A page of sessions, most recently active first (id breaks ties, so pages are stable)."""
    limit = max(1, min(int(limit), MAX_PAGE))
    offset = max(0, int(offset))
    stmt = (
        _scoped(_summary_select(), user_id)
        .order_by(ConversationSession.updated_at.desc(), ConversationSession.id.desc())
        .limit(limit)
        .offset(offset)
    )
    items = [Summary(*row) for row in db.execute(stmt)]
    total = int(
        db.scalar(_scoped(select(func.count()).select_from(ConversationSession), user_id)) or 0
    )
    return Page(items, total, offset, limit)


def summary(db: Session, *, user_id: uuid.UUID, session_id: uuid.UUID | str) -> Summary:
    """One session's row, owner-scoped (``NotFound`` otherwise)."""
    sid = parse_id(session_id)
    stmt = _summary_select().where(
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
    stmt = _summary_select().add_columns(User.display_name).where(ConversationSession.id == sid)
    row = db.execute(stmt).one_or_none()
    if row is None:
        raise NotFound("Session not found.")
    *fields, display_name = row
    return Summary(*fields), display_name or row.username


# --- search ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageMatch:
    index: int  # position in the conversation, 0 = first message
    role: str
    ts: str
    snippet: text.Snippet


@dataclass(frozen=True)
class SearchHit:
    session: Summary
    title_spans: tuple[text.Span, ...]  # matches in session.title
    matched_messages: int
    messages: tuple[MessageMatch, ...]  # the first few matching messages


@dataclass(frozen=True)
class SearchResult:
    query: str
    hits: list[SearchHit]
    total_hits: int
    sessions_searched: int
    messages_searched: int
    limited: bool  # only the newest MAX_SEARCH_SESSIONS sessions were searched

    @property
    def message(self) -> str:
        """One line for the page: what was searched and what was found."""
        found = f"{self.total_hits:,} session{'s' if self.total_hits != 1 else ''}"
        shown = f" (showing {len(self.hits):,})" if len(self.hits) < self.total_hits else ""
        scope = (
            f"the {self.sessions_searched:,} most recent sessions"
            if self.limited
            else f"{self.sessions_searched:,} sessions"
        )
        return (
            f"{found} match{'es' if self.total_hits == 1 else ''}{shown}; searched titles "
            f"and {self.messages_searched:,} messages in {scope}."
        )


def match_notes(
    hit: SearchHit, *, open_mark: str = "**", close_mark: str = "**"
) -> tuple[str, ...]:
    """One escaped Markdown line per matching message shown under a search hit: its role and
    number in the conversation, then the snippet with the matches marked."""
    return tuple(
        f"_{text.escape_markdown(m.role)} #{m.index + 1}:_ "
        + m.snippet.markdown(open_mark=open_mark, close_mark=close_mark)
        for m in hit.messages
    )


def clean_query(query: str) -> str:
    """The search text as typed, trimmed; refused when empty or longer than the limit."""
    cleaned = query.strip() if isinstance(query, str) else ""
    if not cleaned:
        raise InvalidInput("query", "Type a word or phrase to search for.")
    if len(cleaned) > text.MAX_QUERY_CHARS:
        raise InvalidInput(
            "query",
            f"Search text is too long ({len(cleaned):,} characters); use at most "
            f"{text.MAX_QUERY_CHARS:,}.",
        )
    return cleaned


def _message_matches(
    raw_messages: list[str], match: text.Matcher, *, with_snippets: bool
) -> tuple[int, list[MessageMatch]]:
    """How many messages contain the query, and the first few with their snippets (without
    snippets: 1 at the first match, as only the session's total is wanted)."""
    count = 0
    found: list[MessageMatch] = []
    for index in match.candidates(raw_messages):
        encoded = raw_messages[index]
        try:
            message = json.loads(encoded)
            content = message.get("content")
        except (ValueError, AttributeError):
            continue  # a damaged entry is skipped, never fatal to the search
        if not isinstance(content, str):
            continue
        if not with_snippets:  # beyond the hits shown: whether it matches is enough
            if match.found_in(content):
                return 1, found
            continue
        if len(found) >= MAX_MESSAGE_MATCHES:
            count += match.found_in(content)
            continue
        excerpt = text.snippet(content, match.spans(content))
        if excerpt is None:
            continue
        count += 1
        found.append(
            MessageMatch(index, str(message.get("role", "")), str(message.get("ts", "")), excerpt)
        )
    return count, found


def search(
    db: Session,
    r: redis.Redis,
    *,
    user_id: uuid.UUID | None,
    query: str,
    limit: int = 50,
    content: bool = True,
) -> SearchResult:
    """Sessions whose title or messages contain ``query``, newest first.

    Case-insensitive and literal (regex and SQL metacharacters mean themselves; spaces match
    any whitespace). Histories are read from Redis in pipelined batches of raw JSON; a test
    on the raw text skips sessions and messages that cannot match before anything is decoded.
    """
    match = text.matcher(clean_query(query))
    stmt = (
        _scoped(_summary_select(), user_id)
        .order_by(ConversationSession.updated_at.desc(), ConversationSession.id.desc())
        .limit(MAX_SEARCH_SESSIONS + 1)
    )
    rows = [Summary(*row) for row in db.execute(stmt)]
    limited = len(rows) > MAX_SEARCH_SESSIONS
    rows = rows[:MAX_SEARCH_SESSIONS]
    hits: list[SearchHit] = []
    total = 0
    messages_searched = 0
    limit = max(1, min(int(limit), 1000))
    for start in range(0, len(rows), SEARCH_BATCH):
        batch = rows[start : start + SEARCH_BATCH]
        raw_lists: list[list[str | bytes]] = [[] for _ in batch]
        if content:
            pipe = r.pipeline(transaction=False)
            for row in batch:
                pipe.lrange(history.key(row.id), 0, -1)
            raw_lists = pipe.execute()
        for row, raw_messages in zip(batch, raw_lists, strict=True):
            messages_searched += len(raw_messages)
            title_spans = tuple(match.spans(row.title))
            count, found = 0, list[MessageMatch]()
            if raw_messages:
                count, found = _message_matches(
                    [_as_str(m) for m in raw_messages], match, with_snippets=len(hits) < limit
                )
            if title_spans or count:
                total += 1
                if len(hits) < limit:
                    hits.append(SearchHit(row, title_spans, count, tuple(found)))
    return SearchResult(match.query, hits, total, len(rows), messages_searched, limited)


def _as_str(raw: str | bytes) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


# --- conversation as data, export ------------------------------------------------------------


@dataclass(frozen=True)
class ExportFile:
    filename: str
    mime: str
    data: bytes


EXPORT_FORMAT = "ledger.session.v1"


@dataclass(frozen=True)
class ExportKind:
    label: str
    ext: str
    mime: str

    def filename(self, row: Summary) -> str:
        return export_filename(row, ext=self.ext)


EXPORT_KINDS = (
    ExportKind("Markdown", "md", "text/markdown"),
    ExportKind("JSON", "json", "application/json"),
)


def export_filename(row: Summary, *, ext: str) -> str:
    """The export's file name (known before the file is built): title, id prefix, extension."""
    return text.safe_filename(row.title, suffix=row.id.hex[:8], ext=ext)


def _message_record(index: int, message: history.Message) -> dict[str, Any]:
    return {
        "index": index,
        "timestamp": message.get("ts"),
        "role": message.get("role"),
        "status": message.get("status", "complete"),
        "content": message.get("content", ""),
        "stats": message.get("stats", {}),
        "error": message.get("error"),
    }


def conversation_frame(
    db: Session, r: redis.Redis, *, user_id: uuid.UUID, session_id: uuid.UUID | str
) -> pd.DataFrame:
    """The conversation as a DataFrame, one row per message (stats flattened to columns
    ``stats.<name>``): what a notebook reads."""
    records = [
        _message_record(i, m)
        for i, m in enumerate(messages(db, r, user_id=user_id, session_id=session_id))
    ]
    columns = ["index", "timestamp", "role", "status", "content", "error"]
    frame = pd.DataFrame.from_records(
        [{k: rec[k] for k in columns} for rec in records], columns=columns
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    frame["chars"] = frame["content"].map(len).astype("int64")
    stats = pd.json_normalize([rec["stats"] or {} for rec in records]) if records else None
    if stats is not None and not stats.empty:
        stats.columns = [f"stats.{c}" for c in stats.columns]
        frame = pd.concat([frame, stats], axis=1)
    return frame


def _session_record(row: Summary) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "title": row.title,
        "owner": row.username,
        "model": row.model,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "message_count": row.message_count,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
    }


def export_json(
    db: Session, r: redis.Redis, *, user_id: uuid.UUID, session_id: uuid.UUID | str
) -> ExportFile:
    """Every message with its timestamp, role, status, stats and error, losslessly."""
    row = summary(db, user_id=user_id, session_id=session_id)
    body = {
        "format": EXPORT_FORMAT,
        "exported_at": now().isoformat(),
        "session": _session_record(row),
        "messages": [
            _message_record(i, m) for i, m in enumerate(history.read_all(r, session_id=row.id))
        ],
    }
    try:
        data = json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a notebook can store one) has no UTF-8 form; JSON's \u escapes
        # carry it losslessly, as history._encode does.
        data = json.dumps(body, ensure_ascii=True, indent=2).encode("utf-8")
    return ExportFile(export_filename(row, ext="json"), "application/json", data)


_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _fmt_ts(value: str | None) -> str:
    if not value:
        return "time unknown"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_stats(stats: dict[str, Any]) -> str:
    return " · ".join(f"{k}: {v}" for k, v in stats.items())


def export_markdown(
    db: Session, r: redis.Redis, *, user_id: uuid.UUID, session_id: uuid.UUID | str
) -> ExportFile:
    """A readable document: the session's facts, then every message under a heading with
    its number, role, time and status, and its stats below it."""
    row = summary(db, user_id=user_id, session_id=session_id)
    lines = [
        f"# {text.escape_markdown(row.title)}",
        "",
        f"- Session: `{row.id}`",
        f"- Owner: {text.escape_markdown(row.username)}",
        f"- Model: {text.code_span(row.model) if row.model else 'unknown'}",
        f"- Started: {_fmt_ts(row.created_at.isoformat())}; "
        f"last activity: {_fmt_ts(row.updated_at.isoformat())}",
        f"- Tokens: {row.prompt_tokens:,} prompt + {row.completion_tokens:,} completion",
        f"- Exported: {_fmt_ts(now().isoformat())}",
    ]
    all_messages = history.read_all(r, session_id=row.id)
    lines += [f"- Messages: {len(all_messages):,}", ""]
    for i, message in enumerate(all_messages):
        status = message.get("status", "complete")
        role = str(message.get("role", "unknown")).capitalize()
        head = f"### {i + 1} · {role} · {_fmt_ts(message.get('ts'))}"
        if status != "complete":
            head += f" · {status}"
        lines += ["", "---", "", head, "", message.get("content", "")]
        if message.get("error"):
            lines += ["", f"> Error: {text.escape_markdown(str(message['error']))}"]
        if message.get("stats"):
            lines += ["", f"> {text.code_span(_fmt_stats(message['stats']))}"]
    # A lone surrogate has no UTF-8 form: it becomes U+FFFD in this readable document.
    data = _LONE_SURROGATE.sub("\ufffd", "\n".join(lines) + "\n").encode("utf-8")
    return ExportFile(export_filename(row, ext="md"), "text/markdown", data)


def export(
    db: Session, r: redis.Redis, *, user_id: uuid.UUID, session_id: uuid.UUID | str, ext: str
) -> ExportFile:
    """The export of one of ``EXPORT_KINDS`` by its extension (``md`` or ``json``)."""
    builders = {"md": export_markdown, "json": export_json}
    if ext not in builders:
        raise InvalidInput("format", f"Export as one of: {', '.join(builders)}.")
    return builders[ext](db, r, user_id=user_id, session_id=session_id)


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
