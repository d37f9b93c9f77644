"""The embedded backend with the real SmolLM2-135M-Instruct model (kept to 16 tokens)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core import llm
from core.errors import LLMUnavailable, ModelNotFound
from core.llm import SMOLLM2_FILE, ChatMessage, LlamaCppBackend, default_gguf_path

pytestmark = pytest.mark.llm

ASK: list[ChatMessage] = [
    {"role": "system", "content": "You are a concise finance assistant."},
    {"role": "user", "content": "What does EBITDA stand for?"},
]


@pytest.fixture(scope="module")
def smollm2() -> LlamaCppBackend:
    path = default_gguf_path()
    assert path is not None and path.name == SMOLLM2_FILE and path.is_file()
    return LlamaCppBackend(model_path=path, n_ctx=2048, n_threads=2, max_wait=30)


def test_streams_a_real_reply_with_real_token_counts(smollm2: LlamaCppBackend) -> None:
    chunks = list(smollm2.stream_chat(ASK, options={"num_predict": 16, "temperature": 0}))
    text = "".join(c.text for c in chunks)
    usage = chunks[-1].usage
    assert text.strip()
    assert usage is not None and usage.done_reason in ("stop", "length")
    assert usage.completion_tokens == smollm2.count_tokens(text)
    assert 0 < usage.completion_tokens <= 16
    # The chat template wraps the two messages: more tokens than their words.
    assert usage.prompt_tokens is not None and usage.prompt_tokens > 15
    assert len([c for c in chunks if c.text]) > 1  # streamed, not one block


def test_context_length_is_the_loaded_window(smollm2: LlamaCppBackend) -> None:
    assert smollm2.context_length() == 2048
    assert smollm2.list_models() == [SMOLLM2_FILE.removesuffix(".gguf")]
    assert "loaded" in smollm2.health()


def test_another_model_name_is_not_found(smollm2: LlamaCppBackend) -> None:
    with pytest.raises(ModelNotFound):
        list(smollm2.stream_chat(ASK, model="llama3.2:3b"))


def test_missing_model_file_is_reported_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    backend = LlamaCppBackend(model_path=missing, n_ctx=512, n_threads=1, max_wait=1)
    with pytest.raises(LLMUnavailable, match=r"nope\.gguf does not exist"):
        backend.health()


# core.llm must outlive the interpreter's sweep of module globals (as it does at the end of a
# long pytest run): a codec search function holds it until after the modules are cleared.
EXIT_SCRIPT = """
import codecs
from core import llm
backend = llm.LlamaCppBackend(
    model_path=llm.default_gguf_path(), n_ctx=512, n_threads=1, max_wait=5
)
print(backend.count_tokens("EBITDA"))
codecs.register(lambda name, _keep=llm: None)
"""


def test_a_process_that_loaded_the_model_exits_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().isdigit()
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr


def test_closed_models_load_again_on_next_use(smollm2: LlamaCppBackend) -> None:
    before = smollm2.llama()
    llm.close_models()
    assert llm._loaded == {}
    assert smollm2.count_tokens("EBITDA") > 0
    assert smollm2.llama() is not before
