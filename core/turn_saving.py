"""Saving a chat turn: the reply in Redis, the session's counts and one usage row in
PostgreSQL, the metrics; and retrying what could not be saved while a store was down.

``Turn`` (core.turn) streams; this mixin holds everything it does once the stream has ended,
whatever ended it. What could not be saved is kept and retried by ``save_again()``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core import citations, drafts, history, metrics, quota, sessions, usage_log
from core.citations import Check, Grounding, Source
from core.errors import (
    LedgerError,
    NotFound,
    ServiceUnavailable,
    StorageRefused,
    first_line,
)
from core.llm import Backend, Usage
from core.services import redis_refusal, redis_url_of
from core.tools import ToolCard

SessionFactory = Callable[[], Session]

OUTCOME_STATUS: dict[str, history.Status] = {
    "ok": "complete",
    "truncated": "truncated",
    "cancelled": "interrupted",
    "error": "error",
}


@dataclass
class TurnStats:
    """What the caption under a reply shows, and what the usage row records."""

    model: str
    backend: str
    outcome: str
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float | None
    duration_ms: float
    tokens_per_second: float | None
    estimated: bool  # True when the model sent no usage figures (stopped or failed reply)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def redis_unavailable(r: redis.Redis, exc: BaseException) -> ServiceUnavailable:
    metrics.STORAGE_ERRORS.labels(service="redis").inc()
    refusal = redis_refusal(exc)
    if refusal is not None:
        return StorageRefused("Redis", redis_url_of(r), refusal)
    return ServiceUnavailable("Redis", redis_url_of(r), str(exc) or type(exc).__name__)


class TurnSaving:
    """What a turn saves when it ends, and the retry of what it could not save."""

    session_factory: SessionFactory
    r: redis.Redis
    backend: Backend
    user_id: uuid.UUID
    session_id: uuid.UUID
    new_session: bool
    prompt: str
    model: str
    stats: TurnStats | None
    status: history.Status | None
    error: str | None
    cards: list[ToolCard]
    reservation: uuid.UUID | None
    grounding: Grounding | None
    sources: list[Source]
    citation_check: Check | None
    _reply: history.Message | None
    _reply_problem: str | None
    _usage_problem: str | None
    _usage_saved: bool
    _counted: int
    _expected: int
    again: bool
    version: int | None
    compare: bool
    _slot: int
    _started: float
    _first: float | None
    _parts: list[str]
    _prompt_estimate: int
    _finished: bool
    _stored: bool
    _done: threading.Event

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def _finish(self, outcome: str, error: str | None, final: Usage | None) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            self._save(outcome, error, final)
        finally:
            self._done.set()

    def _save(self, outcome: str, error: str | None, final: Usage | None) -> None:
        ended = time.perf_counter()
        text = self.text
        ttft_ms = (self._first - self._started) * 1000 if self._first is not None else None
        duration_ms = (ended - self._started) * 1000
        estimated = final is None or final.prompt_tokens is None or final.completion_tokens is None
        prompt_tokens = (
            final.prompt_tokens
            if final is not None and final.prompt_tokens is not None
            else self._prompt_estimate
        )
        completion_tokens = (
            final.completion_tokens
            if final is not None and final.completion_tokens is not None
            else len(self._parts)  # one token a chunk, as both backends stream
        )
        rate = final.tokens_per_second if final is not None else None
        if rate is None and self._first is not None and completion_tokens > 1:
            seconds = ended - self._first
            rate = (completion_tokens - 1) / seconds if seconds > 0 else None
        self.stats = TurnStats(
            model=self.model,
            backend=self.backend.name,
            outcome=outcome,
            prompt_tokens=int(prompt_tokens),
            completion_tokens=int(completion_tokens),
            ttft_ms=round(ttft_ms, 1) if ttft_ms is not None else None,
            duration_ms=round(duration_ms, 1),
            tokens_per_second=round(rate, 1) if rate else None,
            estimated=estimated,
        )
        self.status = OUTCOME_STATUS[outcome]
        self.error = error
        if self.grounding is not None:
            left_out = len(self.grounding.sources) - len(self.sources)
            self.citation_check = citations.check(text, self.sources, left_out=left_out)
        self._store_reply(text)
        self._record_usage()
        self._record_metrics()

    def _store_reply(self, text: str) -> None:
        assert self.stats is not None and self.status is not None
        self._reply = history.make_message(
            "assistant",
            text,
            stats=self.stats.as_dict(),
            status=self.status,
            error=self.error,
            tools=[card.record() for card in self.cards],
            sources=[source.record() for source in self.sources],
            citations=self.citation_check.record() if self.citation_check else None,
            version=self.version,
            compare=self.compare,
        )
        self._append_reply()

    def _append_reply(self) -> None:
        assert self._reply is not None
        try:
            history.append(self.r, session_id=self.session_id, message=self._reply)
            self._stored, self._reply_problem = True, None
            drafts.finish(self.r, self.session_id, slot=self._slot)
        except (redis.RedisError, OSError) as exc:
            self._reply_problem = str(redis_unavailable(self.r, exc)) + " The reply was not saved."

    def _record_usage(self) -> None:
        stats = self.stats
        assert stats is not None
        db = self.session_factory()
        counted = (self._expected - 1) + int(self._stored)
        try:
            session_id: uuid.UUID | None = self.session_id
            try:
                row = sessions.touch(
                    db,
                    user_id=self.user_id,
                    session_id=self.session_id,
                    messages_added=counted,
                    prompt_tokens=stats.prompt_tokens,
                    completion_tokens=stats.completion_tokens,
                    model=self.model,
                )
                first_prompt = row.message_count <= 2 and not self.new_session and not self.again
                if first_prompt and row.title == sessions.DEFAULT_TITLE:
                    row.title = sessions.title_from_prompt(self.prompt)
            except NotFound:  # deleted in another tab while the reply streamed
                session_id = None
            usage_log.record_call(
                db,
                user_id=self.user_id,
                session_id=session_id,
                model=self.model,
                backend=self.backend.name,
                prompt_tokens=stats.prompt_tokens,
                completion_tokens=stats.completion_tokens,
                ttft_ms=stats.ttft_ms,
                duration_ms=stats.duration_ms,
                outcome=stats.outcome,
                error=self.error,
                tool_calls=len(self.cards),
            )
            quota.release(
                db, self.reservation, user_id=self.user_id
            )  # the usage row counts from now on
            db.commit()
            self._usage_saved, self._usage_problem, self._counted = True, None, counted
            self.reservation = None
        except (SQLAlchemyError, LedgerError) as exc:
            db.rollback()
            metrics.STORAGE_ERRORS.labels(service="postgres").inc()
            self._usage_problem = f"The usage record could not be written ({first_line(exc)})"
        finally:
            db.close()

    def _count_reply(self) -> None:
        """A reply stored after its usage row: the session row counts it too."""
        db = self.session_factory()
        try:
            sessions.touch(db, user_id=self.user_id, session_id=self.session_id, messages_added=1)
            db.commit()
            self._counted += 1
        except NotFound:
            self._counted += 1  # the session was deleted meanwhile: nothing to count
        except SQLAlchemyError:
            db.rollback()
            metrics.STORAGE_ERRORS.labels(service="postgres").inc()
        finally:
            db.close()

    @property
    def reply(self) -> history.Message | None:
        """The reply as saved (or to be saved) in the history, once the turn has ended."""
        return self._reply

    @property
    def storage_error(self) -> str | None:
        """What could not be saved when the turn ended (None when everything was)."""
        usage_note = None
        if self._usage_problem:
            kept = "; the reply itself is saved." if self._stored else "."
            usage_note = self._usage_problem + kept
        return " ".join(p for p in (self._reply_problem, usage_note) if p) or None

    @property
    def pending(self) -> bool:
        """True while something of this finished turn (its saving done) is still not saved."""
        done = self._done.is_set()
        return done and (
            not self._stored or not self._usage_saved or self._counted < self._expected
        )

    def save_again(self) -> bool:
        """Write what could not be written when the turn ended (Redis or PostgreSQL was
        down): the reply, its usage row, the session's counts. True when nothing is pending.

        The page calls this on its next runs, so a reply that streamed while Redis was down
        is saved as soon as Redis answers again (as long as the tab stays open).
        """
        if not self._done.is_set():  # still streaming or saving, on the thread of its run
            return False
        if not self._stored and self._reply is not None:
            self._append_reply()
        if not self._usage_saved:
            self._record_usage()
        elif self._stored and self._counted < self._expected:
            self._count_reply()
        return not self.pending

    def _record_metrics(self) -> None:
        stats = self.stats
        assert stats is not None
        model = self.model
        metrics.LLM_REQUESTS.labels(model=model, backend=stats.backend, outcome=stats.outcome).inc()
        if stats.ttft_ms is not None:
            metrics.LLM_TTFT.labels(model=model).observe(stats.ttft_ms / 1000)
        metrics.LLM_DURATION.labels(model=model).observe(stats.duration_ms / 1000)
        metrics.LLM_PROMPT_TOKENS.labels(model=model).inc(stats.prompt_tokens)
        metrics.LLM_COMPLETION_TOKENS.labels(model=model).inc(stats.completion_tokens)
        if stats.outcome == "ok" and stats.tokens_per_second:
            metrics.LLM_TOKENS_PER_SECOND.labels(model=model).observe(stats.tokens_per_second)
