"""Several Ollama servers as one backend (OLLAMA_HOSTS): each reply goes to the least busy
healthy host, and a host that refuses before the first token is marked down and the next one
asked.

- **Choice**: among hosts not marked down, the one with the fewest replies streaming from this
  process (ties: the order of OLLAMA_HOSTS). Counting per process is what each process can
  know without a round trip; with the load balancer spreading browsers evenly it spreads the
  load too.
- **Failover**: a host that cannot be reached, times out before answering, or lacks the model
  is skipped, and the reply is asked of the next; the analyst sees nothing of it. Once text
  has streamed, a failure ends the reply as before (its partial text is saved and marked): a
  second host would answer from the start and repeat what was said.
- **Down and back**: a host that failed is left out for DOWN_SECONDS, then tried again with
  the next reply; when every host is down, they are tried anyway, the soonest-due first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core import metrics
from core.errors import LLMError, LLMUnavailable, ModelNotFound
from core.llm.base import Backend, ChatMessage, Chunk
from core.llm.ollama import OllamaBackend

DOWN_SECONDS = 30.0


@dataclass
class HostState:
    host: str
    busy: int = 0
    down_until: float = 0.0
    last_error: str | None = None

    def up(self, now: float) -> bool:
        return self.down_until <= now


class OllamaPool(Backend):
    name = "ollama"
    demo = False

    def __init__(self, members: Sequence[OllamaBackend], *, clock: Any = time.monotonic) -> None:
        if len(members) < 2:
            raise ValueError("a pool has two hosts or more")
        self.members = list(members)
        self.default_model = members[0].default_model
        self.read_timeout = members[0].read_timeout
        self._state = {m.host: HostState(m.host) for m in members}
        self._lock = threading.Lock()
        self._clock = clock
        for member in members:
            metrics.LLM_HOST_UP.labels(host=member.host).set(1)

    @property
    def label(self) -> str:
        return f"Ollama pool ({', '.join(m.host for m in self.members)})"

    def states(self) -> list[HostState]:
        """Each host's state now (copies), in OLLAMA_HOSTS order."""
        with self._lock:
            return [HostState(**vars(self._state[m.host])) for m in self.members]

    def _order(self) -> list[OllamaBackend]:
        now = self._clock()
        with self._lock:
            state = self._state
            up = [m for m in self.members if state[m.host].up(now)]
            up.sort(key=lambda m: state[m.host].busy)  # stable: ties keep OLLAMA_HOSTS order
            down = sorted(
                (m for m in self.members if not state[m.host].up(now)),
                key=lambda m: state[m.host].down_until,
            )
        return up + down

    def _mark_down(self, member: OllamaBackend, error: Exception) -> None:
        with self._lock:
            state = self._state[member.host]
            state.down_until = self._clock() + DOWN_SECONDS
            state.last_error = str(error)
        metrics.LLM_HOST_UP.labels(host=member.host).set(0)

    def _mark_up(self, member: OllamaBackend) -> None:
        with self._lock:
            state = self._state[member.host]
            was_down = state.down_until > 0
            state.down_until, state.last_error = 0.0, None
        if was_down:
            metrics.LLM_HOST_UP.labels(host=member.host).set(1)

    def _busy(self, member: OllamaBackend, change: int) -> None:
        with self._lock:
            self._state[member.host].busy += change
            busy = self._state[member.host].busy
        metrics.LLM_HOST_ACTIVE.labels(host=member.host).set(busy)

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> Iterator[Chunk]:
        failures: list[LLMError] = []
        for member in self._order():
            started = False
            self._busy(member, +1)
            try:
                stream = member.stream_chat(messages, model=model, options=options, tools=tools)
                for chunk in stream:
                    started = True
                    yield chunk
                self._mark_up(member)
                return
            except (LLMUnavailable, ModelNotFound) as exc:
                if isinstance(exc, LLMUnavailable):
                    self._mark_down(member, exc)
                if started:
                    raise  # text was shown: another host would start the reply again
                failures.append(exc)
                metrics.LLM_FAILOVERS.labels(host=member.host).inc()
            finally:
                self._busy(member, -1)
        raise self._all_failed(failures, model)

    def _all_failed(self, failures: list[LLMError], model: str | None) -> LLMError:
        if failures and all(isinstance(f, ModelNotFound) for f in failures):
            return failures[0]
        said = "; ".join(str(f) for f in failures)
        return LLMUnavailable(f"No Ollama host of the {len(self.members)} answered: {said}")

    def _first_answer(self, ask: Any) -> Any:
        failures: list[LLMError] = []
        for member in self._order():
            try:
                answer = ask(member)
            except LLMUnavailable as exc:
                self._mark_down(member, exc)
                failures.append(exc)
                continue
            self._mark_up(member)
            return answer
        raise self._all_failed(failures, None)

    def list_models(self) -> list[str]:
        """The models installed on any host that answers."""
        found: set[str] = set()
        failures: list[LLMError] = []
        for member in self.members:
            try:
                found.update(member.list_models())
                self._mark_up(member)
            except LLMUnavailable as exc:
                self._mark_down(member, exc)
                failures.append(exc)
        if len(failures) == len(self.members):
            raise self._all_failed(failures, None)
        return sorted(found)

    def health(self) -> str:
        models = self.list_models()
        now = self._clock()
        up = sum(1 for s in self.states() if s.up(now))
        return f"{self.label}: {up} of {len(self.members)} up, {len(models)} model(s) installed"

    def context_length(self, model: str | None = None) -> int:
        return int(self._first_answer(lambda m: m.context_length(model)))

    def supports_tools(self, model: str | None = None) -> bool:
        return bool(self._first_answer(lambda m: m.supports_tools(model)))
