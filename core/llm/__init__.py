"""LLM backends behind one small base class: Ollama (official client) and embedded llama.cpp.

``base`` holds the types and the ``Backend`` class, ``ollama`` and ``llamacpp`` the two
backends, ``choice`` which one answers (``get_backend()``) and what the UI says about it. The
names below are the package's public face: ``from core import llm; llm.get_backend()``.
"""

from core.llm.base import (
    Backend,
    ChatMessage,
    Chunk,
    Reply,
    ToolCall,
    Usage,
    collect,
    estimate_tokens,
)
from core.llm.choice import (
    AUTO_RECHECK_SECONDS,
    MODELS_MAX_AGE_SECONDS,
    fallback_reason,
    get_backend,
    installed_models,
    missing_model_note,
    model_choices,
    preferred_model,
    reset,
    serving_note,
)
from core.llm.llamacpp import (
    SMOLLM2_FILE,
    SMOLLM2_PACKAGE,
    LlamaCppBackend,
    close_models,
    default_gguf_path,
)
from core.llm.ollama import PROBE_TIMEOUT_SECONDS, OllamaBackend, ollama_models
from core.llm.pool import HostState, OllamaPool

__all__ = [
    "AUTO_RECHECK_SECONDS",
    "MODELS_MAX_AGE_SECONDS",
    "PROBE_TIMEOUT_SECONDS",
    "SMOLLM2_FILE",
    "SMOLLM2_PACKAGE",
    "Backend",
    "ChatMessage",
    "Chunk",
    "HostState",
    "LlamaCppBackend",
    "OllamaBackend",
    "OllamaPool",
    "Reply",
    "ToolCall",
    "Usage",
    "close_models",
    "collect",
    "default_gguf_path",
    "estimate_tokens",
    "fallback_reason",
    "get_backend",
    "installed_models",
    "missing_model_note",
    "model_choices",
    "ollama_models",
    "preferred_model",
    "reset",
    "serving_note",
]
