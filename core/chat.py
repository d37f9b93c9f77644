"""One chat turn as a generator of text chunks, the same for a page, the CLI and a notebook.

    t = chat.turn(db.get_sessionmaker(), services.redis_client(), llm.get_backend(),
                  user_id=me.id, session_id=None, prompt="What is EBITDA?")
    for text in t:          # or st.write_stream(t)
        print(text, end="")
    t.stats                 # tokens, tokens/s, time to first token, outcome

Before the model is called, ``turn()`` validates the prompt, checks the owner and the daily
quota, makes sure PostgreSQL and Redis answer, and stores the user's message in Redis: a failure
there raises a clear ``LedgerError`` and leaves nothing half-written. While streaming, whatever
ends the reply (the end, an error, ``close()`` from a Stop button or a page left, Ctrl-C), the
generator's ``finally`` stores the reply (whole, or partial and marked ``interrupted`` /
``error``), updates the session row and writes one ``llm_calls`` usage row in its own short
transaction, and records the Prometheus metrics.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from core import history, metrics, sessions, usage
from core.clock import now
from core.config import Settings, get_settings
from core.errors import (
    ConfigError,
    EmptyPrompt,
    InvalidInput,
    LedgerError,
    LLMError,
    NotFound,
    ServiceUnavailable,
    StorageRefused,
)
from core.llm import Backend, ChatMessage, Usage
from core.services import engine_url_of, first_line, redis_refusal, redis_url_of

SessionFactory = Callable[[], Session]

HISTORY_WINDOW = 32  # messages read from Redis at a time while filling the context budget
MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators around each message
MIN_REPLY_TOKENS = 64  # a prompt that leaves less room than this for the reply is refused
MAX_MODEL_NAME = 200
# A reply on screen is redrawn whole at each update: at most one update this often (25 a
# second still reads as a smooth stream), however fast the model's tokens come.
SCREEN_UPDATE_SECONDS = 0.04
DEFAULT_PROMPT = Path(__file__).with_name("prompts") / "finance.md"

# C0 and C1 control characters except tab and newline; lone surrogates (not encodable).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

OUTCOME_STATUS: dict[str, history.Status] = {
    "ok": "complete",
    "cancelled": "interrupted",
    "error": "error",
}


# --- persona -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _read_prompt_file(path: str, mtime_ns: int) -> str:
    return Path(path).read_text(encoding="utf-8")


def system_prompt(settings: Settings | None = None) -> str:
    """The finance persona: SYSTEM_PROMPT_PATH if set, else core/prompts/finance.md.

    The file is read again when it changes. Today's date is appended so the model can say
    how old its figures are.
    """
    settings = settings or get_settings()
    configured = settings.system_prompt_path
    path = configured.expanduser() if configured is not None else DEFAULT_PROMPT
    try:
        text = _read_prompt_file(str(path), path.stat().st_mtime_ns)
    except FileNotFoundError:
        raise ConfigError(f"SYSTEM_PROMPT_PATH points to {path}, which does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"SYSTEM_PROMPT_PATH {path} cannot be read: {exc}") from None
    text = text.strip()
    if not text:
        raise ConfigError(f"The system prompt file {path} is empty.")
    return f"{text}\n\nToday's date: {now():%Y-%m-%d} (UTC)."


# --- prompt --------------------------------------------------------------------------------


def clean_prompt(prompt: str, *, max_chars: int | None = None) -> str:
    """The prompt as it will be stored and sent, or a typed refusal.

    Line endings become ``\\n``; control characters other than tab and newline are removed;
    lone surrogates become U+FFFD; the text is NFC-normalised and stripped. Every other
    character (any script, emoji, right-to-left marks, zero-width joiners) is kept.
    Raises ``EmptyPrompt`` for nothing left, ``InvalidInput`` over MAX_PROMPT_CHARS.
    """
    if not isinstance(prompt, str):
        raise InvalidInput("prompt", "The prompt must be text.")
    limit = max_chars if max_chars is not None else get_settings().max_prompt_chars
    text = prompt.replace("\r\n", "\n").replace("\r", "\n")
    text = _SURROGATE.sub("\ufffd", _CONTROL.sub("", text))
    text = unicodedata.normalize("NFC", text).strip()
    if not text:
        raise EmptyPrompt()
    if len(text) > limit:
        raise InvalidInput(
            "prompt",
            f"The prompt is {len(text):,} characters long; the limit is {limit:,} characters. "
            "Shorten it or split it into several questions.",
        )
    return text


# --- context budget ------------------------------------------------------------------------


def fit_context(
    system: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    budget: int,
    count: Callable[[str], int],
) -> tuple[list[ChatMessage], int]:
    """The messages to send within ``budget`` tokens, and the tokens they use.

    The rule: the system prompt always comes first and the newest message (the prompt) is
    always kept, even over budget (the caller refuses a prompt that cannot fit at all). Older
    messages are added newest first while they fit; the first one that does not fit ends the
    history (no gaps). The kept history never starts with an assistant reply (its question
    was cut). Messages without content (a reply that failed before any text) are skipped.
    """

    def cost(text: str) -> int:
        return count(text) + MESSAGE_OVERHEAD_TOKENS

    usable = [m for m in messages if m.get("content")]
    used = cost(system)
    kept: list[ChatMessage] = []
    for position, message in enumerate(reversed(usable)):
        tokens = cost(str(message["content"]))
        if position > 0 and used + tokens > budget:
            break
        used += tokens
        kept.append({"role": str(message["role"]), "content": str(message["content"])})
    kept.reverse()
    while len(kept) > 1 and kept[0]["role"] == "assistant":
        used -= cost(kept.pop(0)["content"])
    return [{"role": "system", "content": system}, *kept], used


def _recent_history(
    r: redis.Redis,
    *,
    session_id: uuid.UUID,
    newest: list[history.Message],
    budget: int,
    count: Callable[[str], int],
) -> list[history.Message]:
    """``newest`` plus older messages, read a window at a time until the budget is covered."""
    loaded = list(newest)
    tokens = sum(count(m.get("content", "")) for m in loaded)
    fetched, more = len(loaded), len(loaded) >= HISTORY_WINDOW
    while more and tokens <= budget:
        window = history.read_range(
            r, session_id=session_id, start=-(fetched + HISTORY_WINDOW), stop=-(fetched + 1)
        )
        loaded[:0] = window
        fetched += len(window)
        tokens += sum(count(m.get("content", "")) for m in window)
        more = len(window) == HISTORY_WINDOW
    return loaded


# --- the turn ------------------------------------------------------------------------------


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


def caption(stats: Mapping[str, Any] | TurnStats | None) -> str:
    """``128 tokens · 42.1 tokens/s · first token 230 ms · llama3.2:3b``."""
    if stats is None:
        return ""
    s = stats.as_dict() if isinstance(stats, TurnStats) else dict(stats)
    approx = "≈" if s.get("estimated") else ""
    parts = [f"{approx}{int(s.get('completion_tokens') or 0):,} tokens"]
    if s.get("tokens_per_second"):
        parts.append(f"{float(s['tokens_per_second']):.1f} tokens/s")
    if s.get("ttft_ms") is not None:
        parts.append(f"first token {float(s['ttft_ms']):,.0f} ms")
    if s.get("model"):
        parts.append(str(s["model"]))
    return " · ".join(parts)


def status_note(message: Mapping[str, Any]) -> str | None:
    """A visible mark for a reply that did not complete (None for a complete one)."""
    status = message.get("status")
    if status == "interrupted":
        return (
            "Reply stopped before the end (Stop pressed or page left); the text above is partial."
        )
    if status == "error":
        return f"Reply failed: {message.get('error') or 'unknown error'}"
    return None


def session_title(prompt: str) -> str:
    """A session's title made from its first prompt; "New chat" when nothing printable is
    left (a prompt of zero-width or unassigned characters is still a prompt)."""
    try:
        return sessions.clean_title(prompt, truncate=True)
    except InvalidInput:
        return sessions.DEFAULT_TITLE


def for_display(text: str) -> str:
    """Text for Streamlit's Markdown: ``$`` escaped, so "USD 5 and $6" is not read as LaTeX."""
    return text.replace("$", "\\$")


def paced(
    chunks: Iterable[str],
    interval: float = SCREEN_UPDATE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[str]:
    """``chunks`` joined so that a screen showing them updates at most once per ``interval``.

    The first chunk comes out at once (time to first token is untouched); after that, a chunk
    arriving within ``interval`` of the last update is held and comes out with the next one
    that arrives later, and whatever is held comes out when ``chunks`` ends or fails (before
    the error). Nothing is dropped or reordered. The cost: when the model stalls, the words of
    the last ``interval`` before the stall wait for it to end. For ``st.write_stream``, which
    re-sends the whole text so far at every chunk: a 40-token-a-second model then costs 25
    redraws a second, not 40, and a faster one no more.
    """
    held: list[str] = []
    last: float | None = None
    try:
        for text in chunks:
            held.append(text)
            at = clock()
            if last is None or at - last >= interval:
                yield "".join(held)
                held.clear()
                last = at
    except Exception:
        if held:  # a reply that fails (server gone, timeout) keeps every word it got on screen
            yield "".join(held)
        raise
    if held:
        yield "".join(held)


def _db_url(db: Session) -> str:
    try:
        bind = db.get_bind()
    except Exception:
        return "the configured database"
    return engine_url_of(bind if isinstance(bind, Engine) else bind.engine)


def _redis_unavailable(r: redis.Redis, exc: BaseException) -> ServiceUnavailable:
    metrics.STORAGE_ERRORS.labels(service="redis").inc()
    refusal = redis_refusal(exc)
    if refusal is not None:
        return StorageRefused("Redis", redis_url_of(r), refusal)
    return ServiceUnavailable("Redis", redis_url_of(r), str(exc) or type(exc).__name__)


def _prepare(
    session_factory: SessionFactory,
    r: redis.Redis,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID | str | None,
    title: str,
    model: str,
) -> tuple[uuid.UUID, bool]:
    """Owner check (or a new session row), quota, Redis reachable; one short transaction."""
    db = session_factory()
    try:
        if session_id is not None:
            # Only reads follow: no transaction, which saves the BEGIN and ROLLBACK round trips.
            db.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        usage.check_quota(db, user_id=user_id)
        if session_id is None:
            row = sessions.create(db, user_id=user_id, title=title, model=model)
        else:
            row = sessions.get_for_owner(db, user_id=user_id, session_id=session_id)
        sid = row.id
        if session_id is None:
            try:
                r.ping()  # before the commit: with Redis down, PostgreSQL gets nothing either
            except (redis.RedisError, OSError) as exc:
                raise _redis_unavailable(r, exc) from None
            db.commit()
        return sid, session_id is None
    except IntegrityError:
        db.rollback()
        raise NotFound("Your account no longer exists.") from None
    except SQLAlchemyError as exc:
        db.rollback()
        metrics.STORAGE_ERRORS.labels(service="postgres").inc()
        raise ServiceUnavailable("PostgreSQL", _db_url(db), first_line(exc)) from None
    finally:
        db.close()


def _forget_session(session_factory: SessionFactory, *, user_id: uuid.UUID, sid: uuid.UUID) -> None:
    """Undo a session row created for a prompt that could not be stored."""
    try:
        db = session_factory()
        try:
            row = sessions.get_for_owner(db, user_id=user_id, session_id=sid)
            db.delete(row)
            db.commit()
        finally:
            db.close()
    except (LedgerError, SQLAlchemyError):
        pass


def turn(
    session_factory: SessionFactory,
    r: redis.Redis,
    backend: Backend,
    *,
    user_id: uuid.UUID,
    prompt: str,
    session_id: uuid.UUID | str | None = None,
    model: str | None = None,
    settings: Settings | None = None,
) -> Turn:
    """Start one turn: checks and stores the prompt now; iterate the result for the reply.

    ``session_id=None`` starts a new session (titled from the prompt); a session of another
    user is ``NotFound``, like an unknown one. Raises ``EmptyPrompt`` (nothing to send: ignore
    it), ``InvalidInput``, ``QuotaExceeded``, ``ServiceUnavailable`` or ``ConfigError``
    before anything is written.
    """
    started = time.perf_counter()
    settings = settings or get_settings()
    text = clean_prompt(prompt, max_chars=settings.max_prompt_chars)
    model = (model or backend.default_model).strip()
    if not model or len(model) > MAX_MODEL_NAME:
        raise InvalidInput("model", f"Model names are 1 to {MAX_MODEL_NAME} characters.")
    system = system_prompt(settings)
    sid, new = _prepare(
        session_factory,
        r,
        user_id=user_id,
        session_id=session_id,
        title=session_title(text),
        model=model,
    )
    try:
        newest = history.append_and_read_last(
            r, session_id=sid, message=history.make_message("user", text), n=HISTORY_WINDOW
        )
    except (redis.RedisError, OSError) as exc:
        if new:
            _forget_session(session_factory, user_id=user_id, sid=sid)
        raise _redis_unavailable(r, exc) from None
    return Turn(
        session_factory=session_factory,
        r=r,
        backend=backend,
        settings=settings,
        user_id=user_id,
        session_id=sid,
        new_session=new,
        prompt=text,
        system=system,
        model=model,
        started=started,
        newest=newest,
    )


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
            recent = _recent_history(
                self.r,
                session_id=self.session_id,
                newest=self._newest,
                budget=window - reserve,
                count=count,
            )
        except (redis.RedisError, OSError) as exc:
            raise _redis_unavailable(self.r, exc) from None
        messages, used = fit_context(self.system, recent, budget=window - reserve, count=count)
        if used > window - MIN_REPLY_TOKENS:
            raise InvalidInput(
                "prompt",
                f"This prompt needs about {used:,} tokens with the instructions, but the model "
                f"{self.model} works with a {window:,}-token context window. Shorten it.",
            )
        self._prompt_estimate = used
        self._options = {
            "num_ctx": window,
            "num_predict": max(MIN_REPLY_TOKENS, min(settings.llm_max_reply_tokens, window - used)),
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
            self._reply_problem = str(_redis_unavailable(self.r, exc)) + " The reply was not saved."

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
                    row.title = session_title(self.prompt)
            except NotFound:  # deleted in another tab while the reply streamed
                session_id = None
            usage.record_call(
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
