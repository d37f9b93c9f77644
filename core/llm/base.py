"""What every LLM backend shares: the message, chunk and usage types, and ``Backend``.

A backend streams a chat reply as ``Chunk`` objects: text chunks, then one final chunk that
carries ``Usage`` (token counts, timings, the stop reason). Every failure is a
``core.errors.LLMError``: ``LLMUnavailable`` (server unreachable, connection dropped, timeout),
``ModelNotFound`` (not pulled), or plain ``LLMError`` (an error reported in the middle of a
reply). A backend implements ``stream_chat`` and the small queries below; ``chat()`` (the whole
reply at once) is written once, here.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict


class ChatMessage(TypedDict):
    role: str
    content: str
    # An assistant turn that called tools, and a tool's answer (Ollama's message fields).
    tool_calls: NotRequired[list[dict[str, Any]]]
    tool_name: NotRequired[str]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool the model asked for, with its arguments as the model wrote them."""

    name: str
    arguments: dict[str, Any]

    def message(self) -> dict[str, Any]:
        return {"function": {"name": self.name, "arguments": self.arguments}}


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
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def done(self) -> bool:
        return self.usage is not None


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    usage: Usage | None


class Backend(ABC):
    """What every backend offers. ``options`` understands num_ctx, num_predict, temperature
    and seed (Ollama's option names)."""

    name: str  # "ollama" or "llamacpp": stored in usage rows and metrics
    default_model: str
    demo: bool  # True for the tiny embedded model: the UI says so

    @property
    @abstractmethod
    def label(self) -> str:
        """Where answers come from, for the UI ("Ollama at http://...")."""

    @abstractmethod
    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> Iterator[Chunk]:
        """The reply as chunks; the last one carries ``Usage``. With ``tools`` (function
        specs) a chunk may carry ``tool_calls`` instead of text."""

    def supports_tools(self, model: str | None = None) -> bool:
        """Whether ``model`` can call tools (ask before offering any)."""
        return False

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Reply:
        """The whole reply at once (the stream, joined)."""
        return collect(self.stream_chat(messages, model=model, options=options))

    @abstractmethod
    def list_models(self) -> list[str]:
        """The models this backend can answer with."""

    @abstractmethod
    def health(self) -> str:
        """One line saying that it answers (raises an ``LLMError`` when it does not)."""

    @abstractmethod
    def context_length(self, model: str | None = None) -> int:
        """The model's context window in tokens."""

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs; a conservative estimate unless the backend has a tokenizer."""
        return estimate_tokens(text)


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
