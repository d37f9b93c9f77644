"""One chat turn in flight: the reply as an iterator of text chunks (and tool cards), and its
saving.

Whatever ends the reply (the end, an error, ``close()`` from a Stop button or a page left,
Ctrl-C, a turn dropped unread), the generator's ``finally`` stores the reply (whole, or partial
and marked ``interrupted`` / ``error``), updates the session row and writes one ``llm_calls``
usage row in its own short transaction, and records the Prometheus metrics (``TurnSaving``).

With a ``ToolBox`` the model may call tools: each round's tool calls are carried out by code
(``core.tools``), yielded as ``ToolCard`` objects between the text chunks, sent back to the
model, and the model answers again, at most TOOL_CALLS_PER_TURN calls in all.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from core import context_window, drafts, history, metrics, repetition, versions
from core.citations import Check, Grounding, Source
from core.config import Settings
from core.errors import InvalidInput, LedgerError, LLMError
from core.llm import Backend, ChatMessage, ToolCall, Usage
from core.tools import Call, ToolCard
from core.turn_saving import (
    OUTCOME_STATUS,
    SessionFactory,
    TurnSaving,
    TurnStats,
    redis_unavailable,
)

__all__ = ["OUTCOME_STATUS", "SessionFactory", "ToolBox", "Turn", "TurnStats", "redis_unavailable"]

Event = str | ToolCard


@dataclass(frozen=True)
class ToolBox:
    """The tools a turn may offer and how each call is carried out."""

    specs: list[dict[str, Any]]
    run: Callable[[Call, int], ToolCard]  # (the call, where in the reply it stands) -> card
    cap: int  # calls in all for this turn


class Turn(TurnSaving, Iterator[Event]):
    """The reply as an iterator of text chunks and tool cards (a generator underneath).

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
        end: int,
        toolbox: ToolBox | None = None,
        grounding: Grounding | None = None,
        reservation: uuid.UUID | None = None,
        again: bool = False,
        version: int | None = None,
        compare: bool = False,
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
        # Regenerating, or a comparison's second reply: the question is stored already and
        # counted by the turn that stored it; this turn adds a reply only.
        self.again = again
        self._expected = 1 if again else 2
        self.version = version  # of the reply to this question (core.versions); None: 1
        self.compare = compare
        self._slot = version if compare and version else 1  # its draft, beside the other's
        self._started = started
        self.newest = newest
        self.end = end  # the history's length just after ``newest``
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
        self._gen: Generator[Event, None, None] | None = None
        self.toolbox = toolbox
        self.cards: list[ToolCard] = []
        self.grounding = grounding
        self.reservation = reservation  # tokens held against the quota until the usage row
        self.sources: list[Source] = []  # the excerpts the model was given, numbered
        self.citation_check: Check | None = None  # set when the reply ends (with documents)
        self._begin = threading.Lock()  # starting the reply vs. ending a turn never started
        self._loop: str | None = None  # the unit a looping reply kept repeating (stopped)

    # --- iterator protocol ---------------------------------------------------------------

    def __iter__(self) -> Turn:
        return self

    def __next__(self) -> Event:
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
        system = self.system
        if self.grounding is not None:
            # The best excerpts that fit, leaving room for the question and some history.
            room = window - reserve - count(system) - count(self.prompt)
            budget = min(room - context_window.MIN_REPLY_TOKENS, (window - reserve) * 6 // 10)
            self.sources = self.grounding.fit(max(0, budget), count)
            system += self.grounding.section(self.sources)
        try:
            recent = context_window.recent_history(
                self.r,
                session_id=self.session_id,
                newest=self.newest,
                end=self.end,
                budget=window - reserve,
                count=count,
            )
        except (redis.RedisError, OSError) as exc:
            raise redis_unavailable(self.r, exc) from None
        recent = versions.for_context(recent, self.model)  # one version of each reply
        messages, used = context_window.fit_context(
            system, recent, budget=window - reserve, count=count
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

    def _run(self) -> Generator[Event, None, None]:
        outcome, error = "cancelled", None
        totals = _Totals()
        metrics.LLM_ACTIVE_STREAMS.inc()
        try:
            messages = self._context()
            # Redis down: the reply is kept in memory, and saving it at the end says so.
            with contextlib.suppress(redis.RedisError, OSError):
                drafts.track(self.r, self.session_id, self._draft, slot=self._slot)
            while True:
                calls = yield from self._stream_round(messages, totals)
                if not calls or self._cancel.is_set() or self._loop is not None:
                    break
                yield from self._call_tools(messages, calls)
            outcome, error = self._ending(totals)
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
            metrics.LLM_ACTIVE_STREAMS.dec()
            self._finish(outcome, error, totals.usage())

    def _ending(self, totals: _Totals) -> tuple[str, str | None]:
        """How a stream that ran to its end (or was stopped) ended: the outcome and the note.
        "truncated": the reply is not whole although nothing failed (the length limit, or a
        loop stopped early); its text is kept, marked, and counted like any reply."""
        if self._cancel.is_set():
            return "cancelled", None
        if self._loop is not None:
            return "truncated", repetition.describe(self._loop)
        if totals.done_reason == "length":
            limit = self._options.get("num_predict")
            return "truncated", (
                f"Cut off at the length limit ({limit:,} tokens): the reply is not complete. "
                "Ask for the rest, or for a shorter answer."
                if isinstance(limit, int)
                else "Cut off at the length limit: the reply is not complete."
            )
        return "ok", None

    def _stream_round(
        self, messages: list[ChatMessage], totals: _Totals
    ) -> Generator[Event, None, list[ToolCall]]:
        """One request to the model: its text is yielded; the tool calls it asked for return."""
        toolbox = self.toolbox
        offer = toolbox.specs if toolbox and len(self.cards) < toolbox.cap else None
        stream = self.backend.stream_chat(
            messages, model=self.model, options=self._options, tools=offer
        )
        calls: list[ToolCall] = []
        said: list[str] = []
        try:
            for chunk in stream:
                if chunk.usage is not None:
                    totals.add(chunk.usage)
                calls.extend(chunk.tool_calls)
                if chunk.text:
                    if self._first is None:
                        self._first = time.perf_counter()
                    self._parts.append(chunk.text)
                    said.append(chunk.text)
                    yield chunk.text
                    if self._cancel.is_set():
                        break
                    if len(self._parts) % repetition.CHECK_EVERY == 0:
                        span = repetition.REPEATS * repetition.MAX_UNIT  # parts hold 1+ chars
                        self._loop = repetition.loop_unit("".join(self._parts[-span:]))
                        if self._loop is not None:
                            break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if calls and offer is not None:
            messages.append(
                {
                    "role": "assistant",
                    "content": "".join(said),
                    "tool_calls": [c.message() for c in calls],
                }
            )
            return calls
        return []

    def _draft(self) -> tuple[history.Message, dict[str, Any]]:
        """The reply so far, for another process to save should this one die mid-reply."""
        elapsed = (time.perf_counter() - self._started) * 1000
        first = (self._first - self._started) * 1000 if self._first is not None else None
        message = history.make_message(
            "assistant", self.text, status="interrupted", error=drafts.STOPPED,
            tools=[card.record() for card in self.cards], version=self.version,
            compare=self.compare,
        )  # fmt: skip
        usage = {
            "user_id": str(self.user_id), "model": self.model, "backend": self.backend.name,
            "prompt_tokens": self._prompt_estimate, "completion_tokens": len(self._parts),
            "ttft_ms": first, "duration_ms": elapsed, "tool_calls": len(self.cards),
            "reservation": str(self.reservation) if self.reservation else None,
            "messages": self._expected,
        }  # fmt: skip
        return message, usage

    def _call_tools(
        self, messages: list[ChatMessage], calls: list[ToolCall]
    ) -> Generator[Event, None, None]:
        """Carry out each call (the cap refuses the rest), show its card, tell the model."""
        assert self.toolbox is not None
        for call in calls:
            if len(self.cards) >= self.toolbox.cap:
                card = ToolCard(
                    call.name, dict(call.arguments), False, f"{call.name} (not run)",
                    error=f"The limit of {self.toolbox.cap} tool calls for one question is "
                    "reached: answer with the results you have.", at=len(self.text),
                )  # fmt: skip
            else:
                card = self.toolbox.run(Call(call.name, dict(call.arguments)), len(self.text))
            self.cards.append(card)
            yield card
            messages.append({"role": "tool", "tool_name": call.name, "content": card.for_model()})


class _Totals:
    """Usage over every request of a turn (a tool round is a request): token counts and
    model time add up; the last request's stop reason stands."""

    def __init__(self) -> None:
        self.prompt: int | None = None
        self.completion: int | None = None
        self.eval_ms = 0.0
        self.done_reason: str | None = None
        self.seen = False

    def add(self, usage: Usage) -> None:
        self.seen = True
        if usage.prompt_tokens is not None:
            self.prompt = (self.prompt or 0) + usage.prompt_tokens
        if usage.completion_tokens is not None:
            self.completion = (self.completion or 0) + usage.completion_tokens
        self.eval_ms += usage.eval_ms or 0.0
        self.done_reason = usage.done_reason

    def usage(self) -> Usage | None:
        if not self.seen:
            return None
        return Usage(
            prompt_tokens=self.prompt,
            completion_tokens=self.completion,
            eval_ms=self.eval_ms or None,
            done_reason=self.done_reason,
        )
