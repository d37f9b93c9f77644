"""The embedded backend with the real SmolLM2-135M-Instruct model (kept to 16 tokens)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core import llm
from core.config import get_settings
from core.errors import LLMUnavailable, ModelNotFound
from core.llm import SMOLLM2_FILE, ChatMessage, LlamaCppBackend, default_gguf_path, llamacpp

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


# A question the model answers in a few tokens and then stops by itself (not at the limit).
SHORT: list[ChatMessage] = [
    {"role": "system", "content": "You are a concise finance assistant."},
    {"role": "user", "content": "Reply with one word: the opposite of debit?"},
]
GREEDY = {"num_predict": 32, "temperature": 0, "seed": 7}


def test_streamed_token_counts_equal_what_llama_cpp_reports_without_streaming(
    smollm2: LlamaCppBackend,
) -> None:
    chunks = list(smollm2.stream_chat(SHORT, options=GREEDY))
    usage = chunks[-1].usage
    assert usage is not None and usage.done_reason == "stop"  # ended by the model, not the cap
    # The same prompt without streaming: llama.cpp counts the tokens it generated itself.
    whole = smollm2.llama().create_chat_completion(
        messages=[dict(m) for m in SHORT], max_tokens=32, temperature=0, seed=7
    )
    assert "".join(c.text for c in chunks) == whole["choices"][0]["message"]["content"]
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert usage.completion_tokens == whole["usage"]["completion_tokens"] > 0
    assert usage.prompt_tokens == whole["usage"]["prompt_tokens"]


def test_the_model_is_loaded_once_per_process(
    smollm2: LlamaCppBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_BACKEND", "llamacpp")  # n_ctx 2048, 2 threads: as the fixture
    get_settings.cache_clear()
    llm.reset()
    try:
        first = llm.get_backend()
        assert llm.get_backend() is first
        llm.reset()  # settings changed in a notebook: backends are made again...
        second = llm.get_backend()
        assert second is not first
        # ...and every one of them, like any backend for the same file, uses one Llama.
        assert first.llama() is second.llama() is smollm2.llama()
        assert second.count_tokens("EBITDA") == first.count_tokens("EBITDA")
    finally:
        get_settings.cache_clear()
        llm.reset()


def test_two_replies_asked_at_once_take_turns_and_both_finish(smollm2: LlamaCppBackend) -> None:
    events: list[tuple[str, bool]] = []
    failures: list[BaseException] = []

    def ask(name: str) -> None:
        try:
            for chunk in smollm2.stream_chat(SHORT, options=GREEDY):
                events.append((name, chunk.done))
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    tabs = [threading.Thread(target=ask, args=(name,)) for name in ("a", "b")]
    for tab in tabs:
        tab.start()
    for tab in tabs:
        tab.join(timeout=120)
    assert failures == [] and not any(tab.is_alive() for tab in tabs)
    names = [name for name, _ in events]
    assert sorted(set(names)) == ["a", "b"]
    switches = sum(1 for before, after in itertools.pairwise(names) if before != after)
    assert switches == 1  # one whole reply, then the other: never interleaved
    for name in ("a", "b"):
        done = [is_done for who, is_done in events if who == name]
        assert done[-1] and done.count(True) == 1  # each ended with its usage chunk


def test_counting_tokens_runs_beside_a_reply_streaming_on_another_thread(
    smollm2: LlamaCppBackend,
) -> None:
    texts = ["EBITDA", "Net debt / EBITDA ≈ 2.5×", "李宁 revenue 12% y/y", "x " * 300]
    expected = [smollm2.count_tokens(text) for text in texts]
    stream = smollm2.stream_chat(ASK, options={"num_predict": 48, "temperature": 0})
    next(stream)  # a reply is under way: it holds the generation lock
    assert llamacpp._generation_lock.locked()

    def count(rounds: int) -> list[int]:
        return [smollm2.count_tokens(text) for _ in range(rounds) for text in texts]

    results: list[int] = []
    alone = threading.Thread(target=lambda: results.extend(count(1)))
    alone.start()
    alone.join(timeout=30)
    assert not alone.is_alive() and results == expected  # counting never waits for the reply

    results.clear()
    beside = threading.Thread(target=lambda: results.extend(count(40)))
    beside.start()  # counts while this thread decodes the rest of the reply
    rest = list(stream)
    beside.join(timeout=60)
    assert not beside.is_alive() and results == expected * 40
    assert rest[-1].usage is not None and not llamacpp._generation_lock.locked()


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
from core.llm import llamacpp
backend = llm.LlamaCppBackend(
    model_path=llm.default_gguf_path(), n_ctx=512, n_threads=1, max_wait=5
)
print(backend.count_tokens("EBITDA"))
codecs.register(lambda name, _keep=llamacpp: None)
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
    assert llamacpp._loaded == {}
    assert smollm2.count_tokens("EBITDA") > 0
    assert smollm2.llama() is not before
