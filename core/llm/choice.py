"""Which backend answers: ``LLM_BACKEND=ollama|llamacpp``, or ``auto`` (Ollama when its server
answers within a second and has a model installed, else the embedded model), and what the UI
says about it (the model picker's choices, the "who answers" line)."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.config import Settings, get_settings
from core.llm.base import Backend
from core.llm.llamacpp import LlamaCppBackend, default_gguf_path
from core.llm.ollama import PROBE_TIMEOUT_SECONDS, OllamaBackend, ollama_models
from core.llm.pool import OllamaPool

AUTO_RECHECK_SECONDS = 30.0
MODELS_MAX_AGE_SECONDS = 15.0

_select_lock = threading.Lock()
_backends: dict[tuple[Any, ...], Backend] = {}


@dataclass(frozen=True, slots=True)
class _AutoChoice:
    at: float  # monotonic seconds when Ollama was asked
    backend: Backend
    why: str | None  # why the embedded model answers instead of Ollama (None: Ollama answers)


_auto: dict[tuple[Any, ...], _AutoChoice] = {}


def _ollama_backend(settings: Settings) -> Backend:
    """One Ollama server, or a pool of them (OLLAMA_HOSTS), kept for the process."""
    hosts = settings.ollama_host_list
    key = (
        "ollama",
        tuple(hosts),
        settings.ollama_model,
        settings.llm_connect_timeout_seconds,
        settings.llm_read_timeout_seconds,
        settings.llm_context_tokens,
    )
    with _select_lock:
        backend = _backends.get(key)
        if backend is None:
            members = [
                OllamaBackend(
                    host=host,
                    default_model=settings.ollama_model,
                    connect_timeout=settings.llm_connect_timeout_seconds,
                    read_timeout=settings.llm_read_timeout_seconds,
                    fallback_context=settings.llm_context_tokens,
                )
                for host in hosts
            ]
            backend = members[0] if len(members) == 1 else OllamaPool(members)
            _backends[key] = backend
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
        settings.ollama_hosts,
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
    installed = None
    for host in settings.ollama_host_list:  # any host of a pool that has a model will do
        installed = ollama_models(host, timeout=timeout)
        if installed:
            break
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


def _same_model(a: str, b: str) -> bool:
    """Ollama names a model without a tag as ``:latest``."""
    return (a if ":" in a else f"{a}:latest") == (b if ":" in b else f"{b}:latest")


def _chat_models(installed: Sequence[str]) -> list[str]:
    """Installed models that can chat: embedding models (``nomic-embed-text``...) cannot."""
    return [m for m in installed if "embed" not in m.lower()]


def preferred_model(installed: Sequence[str], configured: str) -> str:
    """The model a new chat starts with: the configured one when it is installed, else the
    first installed chat model (a server without the configured model still answers the
    first question), else the configured one (sending then says how to install it)."""
    for model in installed:
        if _same_model(model, configured):
            return model
    return next(iter(_chat_models(installed)), configured)


def model_choices(installed: Sequence[str], configured: str) -> list[str]:
    """The model picker's options: the installed chat models; the configured one alone when
    none is installed (so the picker is never empty)."""
    return _chat_models(installed) or [configured]


def missing_model_note(installed: Sequence[str], configured: str) -> str | None:
    """Before anything is sent: the configured model is not on the server. None when it is
    (or when the backend listed nothing because it did not answer: sending says so)."""
    if not installed or any(_same_model(m, configured) for m in installed):
        return None
    chosen = preferred_model(installed, configured)
    if chosen == configured:
        return (
            f"No chat model is installed on the Ollama server; the configured {configured} "
            f"is missing. Install it with `ollama pull {configured}`."
        )
    return (
        f"The configured model {configured} is not installed on the Ollama server "
        f"(`ollama pull {configured}`); answering with {chosen}, which is."
    )


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
