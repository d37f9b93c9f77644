"""The Ollama backend: the official ``ollama`` sync client against an Ollama server."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import ollama
import pydantic

from core.errors import LLMError, LLMUnavailable, ModelNotFound
from core.llm.base import Backend, ChatMessage, Chunk, ToolCall, Usage

PROBE_TIMEOUT_SECONDS = 1.0


def _ms(nanoseconds: int | None) -> float | None:
    return None if nanoseconds is None else nanoseconds / 1e6


# --- Ollama --------------------------------------------------------------------------------


class OllamaBackend(Backend):
    """The official ``ollama`` sync client against an Ollama server."""

    name = "ollama"
    demo = False

    def __init__(
        self,
        *,
        host: str,
        default_model: str,
        connect_timeout: float,
        read_timeout: float,
        fallback_context: int,
    ) -> None:
        self.host = host.rstrip("/")
        self.default_model = default_model
        self.read_timeout = read_timeout
        self.fallback_context = fallback_context
        self._client = ollama.Client(
            host=self.host,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        )
        self._context: dict[str, tuple[int, frozenset[str]]] = {}
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        return f"Ollama at {self.host}"

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> Iterator[Chunk]:
        model = model or self.default_model
        stream: Any = None
        try:
            stream = self._client.chat(
                model=model,
                messages=[dict(m) for m in messages],
                tools=_validated(tools) if tools else None,
                stream=True,
                options=dict(options) if options else None,
            )
            done = False
            for part in stream:
                calls = _tool_calls(part.message.tool_calls)
                if not part.done:
                    yield Chunk(part.message.content or "", tool_calls=calls)
                    continue
                done = True
                yield Chunk(
                    part.message.content or "",
                    tool_calls=calls,
                    usage=Usage(
                        prompt_tokens=part.prompt_eval_count,
                        completion_tokens=part.eval_count,
                        total_ms=_ms(part.total_duration),
                        load_ms=_ms(part.load_duration),
                        prompt_eval_ms=_ms(part.prompt_eval_duration),
                        eval_ms=_ms(part.eval_duration),
                        done_reason=part.done_reason,
                    ),
                )
                # No return here: reading on to the end of the body lets the HTTP
                # connection go back to the pool instead of being closed.
            if done:
                return
            raise LLMUnavailable(
                f"The connection to Ollama at {self.host} ended before the reply was complete.",
                host=self.host,
            )
        except Exception as exc:
            mapped = self._map_error(exc, model)
            if mapped is exc:
                raise
            raise mapped from exc
        finally:
            if stream is not None:
                stream.close()  # closes the HTTP response: Ollama stops generating

    def list_models(self) -> list[str]:
        try:
            listing = self._client.list()
        except Exception as exc:
            mapped = self._map_error(exc, "")
            if mapped is exc:
                raise
            raise mapped from exc
        return sorted(m.model for m in listing.models if m.model)

    def health(self) -> str:
        models = self.list_models()
        return f"{self.label}: reachable, {len(models)} model(s) installed"

    def _shown(self, model: str) -> tuple[int, frozenset[str]]:
        """(context length, capabilities) from /api/show, asked once per model."""
        with self._lock:
            known = self._context.get(model)
        if known is not None:
            return known
        try:
            shown = self._client.show(model)
        except Exception as exc:
            mapped = self._map_error(exc, model)
            if mapped is exc:
                raise
            raise mapped from exc
        info = shown.modelinfo or {}
        arch = info.get("general.architecture")
        value = info.get(f"{arch}.context_length") if arch else None
        length = int(value) if isinstance(value, int | float) and value > 0 else None
        result = (length or self.fallback_context, frozenset(shown.capabilities or ()))
        with self._lock:
            self._context[model] = result
        return result

    def context_length(self, model: str | None = None) -> int:
        """The model's context length from /api/show (``<arch>.context_length``), else settings."""
        return self._shown(model or self.default_model)[0]

    def supports_tools(self, model: str | None = None) -> bool:
        """Whether /api/show lists ``tools`` among the model's capabilities."""
        return "tools" in self._shown(model or self.default_model)[1]

    def _map_error(self, exc: Exception, model: str) -> Exception:
        """The typed error for a client failure (the exception itself when it is not ours)."""
        host = self.host
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, ollama.ResponseError):
            text = str(exc.error)
            if exc.status_code == 404 and "not found" in text.lower() and "model" in text.lower():
                return ModelNotFound(model, host=host)
            if exc.status_code == -1:  # an {"error": ...} line inside a streamed reply
                return LLMError(f"Ollama reported an error in the middle of the reply: {text}")
            return LLMError(
                f"Ollama at {host} refused the request (HTTP {exc.status_code}): {text}"
            )
        if isinstance(exc, httpx.ConnectTimeout):
            return LLMUnavailable(
                f"Ollama is not reachable at {host}: no connection within the connect timeout "
                "(LLM_CONNECT_TIMEOUT_SECONDS). Check OLLAMA_HOST, or set LLM_BACKEND=auto.",
                host=host,
            )
        if isinstance(exc, httpx.ConnectError | ConnectionError):
            return LLMUnavailable(
                f"Ollama is not reachable at {host}: connection refused. Start it with "
                "`ollama serve`, check OLLAMA_HOST, or set LLM_BACKEND=auto to use the "
                "embedded model.",
                host=host,
            )
        if isinstance(exc, httpx.ReadTimeout):
            return LLMUnavailable(
                f"Ollama at {host} sent nothing for {self.read_timeout:g} s "
                "(LLM_READ_TIMEOUT_SECONDS), so the reply was abandoned.",
                host=host,
            )
        if isinstance(exc, httpx.TimeoutException):
            return LLMUnavailable(f"Ollama at {host} timed out ({type(exc).__name__}).", host=host)
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            return LLMUnavailable(
                f"The connection to Ollama at {host} was dropped before the reply was complete.",
                host=host,
            )
        if isinstance(exc, httpx.HTTPError):
            return LLMUnavailable(
                f"Ollama at {host} failed: {type(exc).__name__}: {exc}", host=host
            )
        if isinstance(exc, json.JSONDecodeError | pydantic.ValidationError):
            return LLMError(f"Ollama at {host} sent a reply this app cannot read.")
        return exc


_tools_seen: dict[str, ollama.Tool] = {}


def _validated(tools: Sequence[Mapping[str, Any]]) -> list[ollama.Tool]:
    """The tool specs as the client's ``Tool`` models, each validated once per process (the
    same few specs go with every request; validating them again cost a chat turn 2 ms)."""
    found = []
    for spec in tools:
        key = json.dumps(spec, sort_keys=True, default=str)
        tool = _tools_seen.get(key)
        if tool is None:
            if len(_tools_seen) > 1000:
                _tools_seen.clear()
            tool = _tools_seen[key] = ollama.Tool.model_validate(dict(spec))
        found.append(tool)
    return found


def _tool_calls(calls: Any) -> tuple[ToolCall, ...]:
    """The tool calls in a streamed chunk, as plain names and argument dicts."""
    found = []
    for call in calls or ():
        function = getattr(call, "function", None)
        name = getattr(function, "name", None)
        if name:
            arguments = getattr(function, "arguments", None)
            found.append(
                ToolCall(str(name), dict(arguments) if isinstance(arguments, Mapping) else {})
            )
    return tuple(found)


@functools.cache
def _probe_client() -> httpx.Client:
    """One client for every model-list probe: each new httpx client loads the CA bundle into an
    SSL context (about 20 ms of CPU, even for an http:// host), and the list is asked for on
    every refresh of the model picker. No connection is kept between probes, so a host that
    went away is found gone at once rather than through a stale connection."""
    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))


def ollama_models(host: str, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> list[str] | None:
    """The models an Ollama server at ``host`` has installed (GET /api/tags), or None when no
    Ollama answers there within ``timeout``."""
    try:
        response = _probe_client().get(f"{host.rstrip('/')}/api/tags", timeout=timeout)
        listing = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    models = listing.get("models") if isinstance(listing, dict) else None
    if not isinstance(models, list):
        return None
    names = (m.get("model") or m.get("name") for m in models if isinstance(m, dict))
    return sorted(str(name) for name in names if name)
