"""One chat turn in flight: the reply as an iterator of text chunks, and its saving.

Whatever ends the reply (the end, an error, ``close()`` from a Stop button or a page left,
Ctrl-C, a turn dropped unread), the generator's ``finally`` stores the reply (whole, or partial
and marked ``interrupted`` / ``error``), updates the session row and writes one ``llm_calls``
usage row in its own short transaction, and records the Prometheus metrics. What could not be
saved (Redis or PostgreSQL down) is kept and retried by ``save_again()``.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core import context_window, history, metrics, sessions, usage_log
from core.config import Settings
from core.errors import (
    InvalidInput,
    LedgerError,
    LLMError,
    NotFound,
    ServiceUnavailable,
    StorageRefused,
    first_line,
)
from core.llm import Backend, ChatMessage, Usage
from core.services import redis_refusal, redis_url_of

SessionFactory = Callable[[], Session]

OUTCOME_STATUS: dict[str, history.Status] = {
    "ok": "complete",
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


class Turn(Iterator[str]):
    """The reply as an iterator of text chunks (a generator underneath).

    After the iteration ends (or ``close()``), ``stats``, ``status``, ``error`` and ``text`` say
    what happened; ``storage_error`` is set when the reply or its usage row could not be saved,
    and ``save_again()`` retries those writes once the store answers again.
    """

    def __init__(
        self,
        *,
        session_factory: SessionFactory,
        r: redis.Redis,
        backend: Backend,
        settings: Settings,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        new_session: bool,
        prompt: str,
        system: str,
        model: str,
        started: float,
        newest: list[history.Message],
    ) -> None:
        self.session_factory = session_factory
        self.r = r
        self.backend = backend
        self.settings = settings
        self.user_id = user_id
        self.session_id = session_id
        self.new_session = new_session
        self.prompt = prompt
        self.system = system
        self.model = model
        self.stats: TurnStats | None = None
        self.status: history.Status | None = None
        self.error: str | None = None
        self._reply: history.Message | None = None
        self._reply_problem: str | None = None
        self._usage_problem: str | None = None
        self._usage_saved = False
        self._counted = 0  # messages of this turn the session row counts (question, reply)
        self._started = started
        self._newest = newest
        self._first: float | None = None
        self._parts: list[str] = []
        self._prompt_estimate = 0
        self._options: dict[str, Any] = {}
        self._finished = False
        self._stored = False
        self._cancel = threading.Event()
        self._done = threading.Event()
        # The generator is made when the first chunk is asked for: until then nothing refers
        # back to this turn, so a turn dropped unread is freed (and recorded) at once.
        self._gen: Generator[str, None, None] | None = None
        self._begin = threading.Lock()  # starting the reply vs. ending a turn never started

    # --- iterator protocol ---------------------------------------------------------------

    def __iter__(self) -> Turn:
        return self

    def __next__(self) -> str:
        gen = self._gen
        if gen is None:
            with self._begin:
                if self._gen is None:
                    if self._finished:  # ended before anyone asked for the reply
                        raise StopIteration
                    self._gen = self._run()
                gen = self._gen
        return next(gen)

    def _end_unstarted(self) -> bool:
        """Record a turn whose reply was never asked for as cancelled; False if it started."""
        with self._begin:
            if self._gen is not None:
                return False
            self._finish("cancelled", None, None)
            return True

    def close(self) -> None:
        """End the turn now (Stop button, page left); the partial reply is saved."""
        if self._end_unstarted():
            return
        assert self._gen is not None
        self._gen.close()
        if not self._finished:
            self._finish("cancelled", None, None)

    def __del__(self) -> None:
        # A turn dropped without being read or closed (a notebook cell run again, a page run
        # cut short between turn() and the stream): its prompt is stored, so it ends the way
        # close() ends it, with an empty reply marked interrupted and a "cancelled" usage row.
        if not getattr(self, "_finished", True) and not sys.is_finalizing():
            self.close()

    def cancel(self) -> None:
        """Ask the turn to stop from another thread; it saves the partial reply and ends.

        Streamlit starts the rerun that a click causes on a new thread while the old run is
        still streaming: the new run calls ``cancel()`` then ``wait()``, so the history it
        renders includes the partial reply. The turn notices at its next chunk.
        """
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the turn has saved its reply; False if ``timeout`` seconds passed."""
        return self._done.wait(timeout)

    def stop(self, timeout: float) -> bool:
        """Cancel the turn if it is still streaming and wait until it has saved its reply;
        False if that took longer than ``timeout`` seconds (it will still save). A turn whose
        reply was never asked for (its run ended before the stream began) ends at once."""
        if self.wait(0) or self._end_unstarted():
            return True
        self.cancel()
        return self.wait(timeout)

    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def finished(self) -> bool:
        return self._finished

    # --- work ----------------------------------------------------------------------------

    def _context(self) -> list[ChatMessage]:
        settings = self.settings
        # The model's own length (Ollama's /api/show; LLM_CONTEXT_TOKENS when it reports none),
        # capped: Ollama allocates memory for the whole num_ctx it is asked for.
        window = min(self.backend.context_length(self.model), settings.llm_max_context_tokens)
        reserve = min(settings.llm_max_reply_tokens, window // 2)
        count = functools.lru_cache(maxsize=1024)(self.backend.count_tokens)
        try:
            recent = context_window.recent_history(
                self.r,
                session_id=self.session_id,
                newest=self._newest,
                budget=window - reserve,
                count=count,
            )
        except (redis.RedisError, OSError) as exc:
            raise redis_unavailable(self.r, exc) from None
        messages, used = context_window.fit_context(
            self.system, recent, budget=window - reserve, count=count
        )
        if used > window - context_window.MIN_REPLY_TOKENS:
            raise InvalidInput(
                "prompt",
                f"This prompt needs about {used:,} tokens with the instructions, but the model "
                f"{self.model} works with a {window:,}-token context window. Shorten it.",
            )
        self._prompt_estimate = used
        self._options = {
            "num_ctx": window,
            "num_predict": max(
                context_window.MIN_REPLY_TOKENS, min(settings.llm_max_reply_tokens, window - used)
            ),
        }
        return messages

    def _run(self) -> Generator[str, None, None]:
        outcome, error = "cancelled", None
        final: Usage | None = None
        stream: Iterator[Any] | None = None
        metrics.LLM_ACTIVE_STREAMS.inc()
        try:
            messages = self._context()
            stream = self.backend.stream_chat(messages, model=self.model, options=self._options)
            for chunk in stream:
                if chunk.usage is not None:
                    final = chunk.usage
                if chunk.text:
                    if self._first is None:
                        self._first = time.perf_counter()
                    self._parts.append(chunk.text)
                    yield chunk.text
                    if self._cancel.is_set():
                        break
            outcome = "cancelled" if self._cancel.is_set() else "ok"
        except (GeneratorExit, KeyboardInterrupt):
            outcome = "cancelled"
            raise
        except LedgerError as exc:
            outcome, error = "error", str(exc)
            raise
        except Exception as exc:
            outcome, error = "error", f"Unexpected error: {type(exc).__name__}: {exc}"
            raise LLMError(error) from exc
        finally:
            if stream is not None:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            metrics.LLM_ACTIVE_STREAMS.dec()
            self._finish(outcome, error, final)

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
        self._store_reply(text)
        self._record_usage()
        self._record_metrics()

    def _store_reply(self, text: str) -> None:
        assert self.stats is not None and self.status is not None
        self._reply = history.make_message(
            "assistant", text, stats=self.stats.as_dict(), status=self.status, error=self.error
        )
        self._append_reply()

    def _append_reply(self) -> None:
        assert self._reply is not None
        try:
            history.append(self.r, session_id=self.session_id, message=self._reply)
            self._stored, self._reply_problem = True, None
        except (redis.RedisError, OSError) as exc:
            self._reply_problem = str(redis_unavailable(self.r, exc)) + " The reply was not saved."

    def _record_usage(self) -> None:
        stats = self.stats
        assert stats is not None
        db = self.session_factory()
        counted = 1 + int(self._stored)
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
                first_prompt = row.message_count <= 2 and not self.new_session
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
            )
            db.commit()
            self._usage_saved, self._usage_problem, self._counted = True, None, counted
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
        return done and (not self._stored or not self._usage_saved or self._counted < 2)

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
        elif self._stored and self._counted < 2:
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
