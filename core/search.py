"""Search sessions by title and message content, with highlighted snippets.

Case-insensitive and literal (regex and SQL metacharacters mean themselves; spaces match any
whitespace). Histories are read from Redis in pipelined batches of raw JSON; a test on the raw
text skips sessions and messages that cannot match before anything is decoded.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import redis
from sqlalchemy.orm import Session

from core import history, text
from core.errors import InvalidInput
from core.models import ConversationSession
from core.sessions import Summary, scoped, summary_select

MAX_SEARCH_SESSIONS = 5000
SEARCH_BATCH = 200
MAX_MESSAGE_MATCHES = 3


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


def find(
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
        scoped(summary_select(), user_id)
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
