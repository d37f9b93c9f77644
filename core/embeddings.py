"""Text to vectors for retrieval: an Ollama embedding model (``/api/embed``), or a hashing
embedder that needs no model (deterministic: tests, benchmarks, offline demos).

EMBEDDING_MODEL picks one: empty (the default) means no vectors, full-text search alone;
``hashing`` the built-in one; any other name an Ollama model (``ollama pull nomic-embed-text``).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence

import httpx
import ollama

from core.config import Settings, get_settings
from core.errors import LLMUnavailable

HASHING = "hashing"
_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_STOP_WORDS = (
    "a an and are as at be by did do does for from has have how in is it its of on or our "
    "than that the their this to was we were what when which who why will with"
)
_STOP = frozenset(_STOP_WORDS.split())


class Embedder(ABC):
    name: str  # stored with each chunk's vector: vectors of two models never mix

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text."""


class HashingEmbedder(Embedder):
    """Words (common ones left out) and word pairs hashed into ``dim`` signed buckets, then
    normalised: lexical, not semantic, but deterministic and free."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"{HASHING}-{dim}"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._one(text) for text in texts]

    def _one(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        words = [w for w in _WORD.findall(text.lower()) if w not in _STOP]
        for feature in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dim
            vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]


class OllamaEmbedder(Embedder):
    def __init__(self, *, host: str, model: str, timeout: float) -> None:
        self.name = model
        self.host = host
        self._client = ollama.Client(host=host, timeout=httpx.Timeout(timeout, connect=3.0))

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            answer = self._client.embed(model=self.name, input=list(texts))
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError) as exc:
            raise LLMUnavailable(
                f"The embedding model {self.name} at {self.host} did not answer ({exc}); "
                "documents are searched by their words alone meanwhile.",
                host=self.host,
            ) from None
        vectors = [list(map(float, v)) for v in answer.embeddings]
        return [_unit(v) for v in vectors]


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def get_embedder(settings: Settings | None = None, *, bulk: bool = False) -> Embedder | None:
    """The configured embedder, or None (full-text search alone). ``bulk``: for a document's
    passages, which may take the whole LLM read timeout; a question's vector gets 30 s at most
    (a chat turn waits for it)."""
    settings = settings or get_settings()
    model = settings.embedding_model.strip()
    if not model:
        return None
    if model == HASHING:
        return HashingEmbedder()
    timeout = settings.llm_read_timeout_seconds
    return OllamaEmbedder(
        host=settings.ollama_host, model=model, timeout=timeout if bulk else min(timeout, 30)
    )
