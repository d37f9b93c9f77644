"""The Ollama backend against a server speaking Ollama's wire format."""

from __future__ import annotations

import time

import pytest

from core import llm
from core.errors import LLMError, LLMUnavailable, ModelNotFound
from core.llm import ChatMessage, OllamaBackend
from tests.support.fake_ollama import FakeOllama

ASK: list[ChatMessage] = [{"role": "user", "content": "What is EBITDA?"}]


def backend_for(server: FakeOllama, *, read_timeout: float = 0.5) -> OllamaBackend:
    return OllamaBackend(
        host=server.url,
        default_model="llama3.2:3b",
        connect_timeout=1.0,
        read_timeout=read_timeout,
        fallback_context=2048,
    )


def test_stream_yields_text_then_usage_from_the_final_chunk(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(reply=["EBITDA", " is", " earnings"])
    chunks = list(backend_for(fake_ollama).stream_chat(ASK))
    assert "".join(c.text for c in chunks) == "EBITDA is earnings"
    assert [c.done for c in chunks] == [False, False, False, True]
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == 3 and usage.prompt_tokens == 3
    assert usage.done_reason == "stop"
    assert usage.load_ms == pytest.approx(2.0)
    assert usage.total_ms is not None and usage.eval_ms is not None
    assert usage.tokens_per_second is not None and usage.tokens_per_second > 0


def test_request_carries_model_messages_and_options(fake_ollama: FakeOllama) -> None:
    list(
        backend_for(fake_ollama).stream_chat(
            ASK, model="qwen2.5:7b", options={"num_ctx": 2048, "num_predict": 4}
        )
    )
    sent = fake_ollama.requests[-1]
    assert sent["model"] == "qwen2.5:7b"
    assert sent["messages"] == [{"role": "user", "content": "What is EBITDA?"}]
    assert sent["options"] == {"num_ctx": 2048, "num_predict": 4}
    assert sent["stream"] is True


def test_num_predict_limit_ends_with_done_reason_length(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(chunks=10)
    reply = backend_for(fake_ollama).chat(ASK, options={"num_predict": 3})
    assert reply.text == "word " * 3
    assert reply.usage is not None and reply.usage.done_reason == "length"


def test_list_models_reads_tags(fake_ollama: FakeOllama) -> None:
    assert backend_for(fake_ollama).list_models() == ["llama3.2:3b", "qwen2.5:7b"]


def test_context_length_comes_from_show_model_info(fake_ollama: FakeOllama) -> None:
    fake_ollama.context_length = 131072
    assert backend_for(fake_ollama).context_length("llama3.2:3b") == 131072


def test_context_length_falls_back_to_settings_when_show_names_none(
    fake_ollama: FakeOllama,
) -> None:
    fake_ollama.context_length = None  # /api/show answers, without <arch>.context_length
    assert backend_for(fake_ollama).context_length("llama3.2:3b") == 2048
    assert fake_ollama.shown == ["llama3.2:3b"]


def test_health_says_reachable(fake_ollama: FakeOllama) -> None:
    assert "reachable, 2 model(s)" in backend_for(fake_ollama).health()


def test_unreachable_server_names_the_host() -> None:
    dead = OllamaBackend(
        host="http://127.0.0.1:9",
        default_model="llama3.2:3b",
        connect_timeout=1.0,
        read_timeout=1.0,
        fallback_context=2048,
    )
    with pytest.raises(LLMUnavailable, match=r"not reachable at http://127\.0\.0\.1:9"):
        list(dead.stream_chat(ASK))
    with pytest.raises(LLMUnavailable, match="ollama serve"):
        dead.list_models()


def test_model_not_pulled_names_the_model_and_the_pull_command(fake_ollama: FakeOllama) -> None:
    with pytest.raises(ModelNotFound) as caught:
        list(backend_for(fake_ollama).stream_chat(ASK, model="mistral:7b"))
    assert '"mistral:7b"' in str(caught.value)
    assert "ollama pull mistral:7b" in str(caught.value)


def test_show_of_missing_model_is_model_not_found(fake_ollama: FakeOllama) -> None:
    with pytest.raises(ModelNotFound, match="ollama pull phi3"):
        backend_for(fake_ollama).context_length("phi3")


def test_error_line_mid_stream_is_an_llm_error_after_the_text(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(reply=["a", "b", "c"], failure="error", after=2, error="out of memory")
    got: list[str] = []
    with pytest.raises(LLMError, match="middle of the reply: out of memory"):
        for chunk in backend_for(fake_ollama).stream_chat(ASK):
            got.append(chunk.text)
    assert got == ["a", "b"]


def test_server_error_status_is_reported_with_its_code(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(failure="status", status=500, error="llama runner process has terminated")
    with pytest.raises(LLMError, match=r"HTTP 500\): llama runner process has terminated"):
        list(backend_for(fake_ollama).stream_chat(ASK))


def test_connection_dropped_mid_stream_is_unavailable(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(reply=["a", "b", "c"], failure="drop", after=1)
    got: list[str] = []
    with pytest.raises(LLMUnavailable, match="dropped before the reply was complete"):
        for chunk in backend_for(fake_ollama).stream_chat(ASK):
            got.append(chunk.text)
    assert got == ["a"]


@pytest.mark.parametrize("after", [0, 2])
def test_silent_server_hits_the_read_timeout(fake_ollama: FakeOllama, after: int) -> None:
    fake_ollama.script(reply=["a", "b", "c"], failure="hang", after=after)
    started = time.perf_counter()
    with pytest.raises(LLMUnavailable, match=r"sent nothing for 0\.3 s"):
        list(backend_for(fake_ollama, read_timeout=0.3).stream_chat(ASK))
    assert 0.25 < time.perf_counter() - started < 3


def test_auto_uses_ollama_when_it_answers(
    ollama_env: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import get_settings

    monkeypatch.setenv("LLM_BACKEND", "auto")
    get_settings.cache_clear()
    backend = llm.get_backend()
    assert backend.name == "ollama" and ollama_env.url in backend.label


def test_auto_waits_until_ollama_has_a_model_and_says_which_pull_to_run(
    ollama_env: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import get_settings

    monkeypatch.setenv("LLM_BACKEND", "auto")
    get_settings.cache_clear()
    ollama_env.models = ()  # answering, but its first pull has not finished
    now = 1000.0
    backend = llm.get_backend(clock=lambda: now)
    assert backend.name == "llamacpp"
    note = llm.serving_note(backend)
    assert f"Ollama at {ollama_env.url} has no model yet" in note
    assert "`ollama pull llama3.2:3b`" in note

    ollama_env.models = ("llama3.2:3b",)  # the pull finished
    now += llm.AUTO_RECHECK_SECONDS - 1
    assert llm.get_backend(clock=lambda: now).name == "llamacpp"  # not asked again yet
    now += 2
    backend = llm.get_backend(clock=lambda: now)
    assert backend.name == "ollama"
    assert llm.fallback_reason() is None
    assert llm.serving_note(backend) == f"Answering: llama3.2:3b via Ollama at {ollama_env.url}."


def test_auto_falls_back_to_the_embedded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import get_settings

    monkeypatch.setenv("LLM_BACKEND", "auto")
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    get_settings.cache_clear()
    llm.reset()
    try:
        backend = llm.get_backend()
        assert backend.name == "llamacpp" and backend.demo
        assert "No Ollama answers at http://127.0.0.1:9" in llm.serving_note(backend)
    finally:
        get_settings.cache_clear()
        llm.reset()


def test_installed_models_are_asked_again_only_after_max_age(fake_ollama: FakeOllama) -> None:
    backend = backend_for(fake_ollama)
    assert llm.installed_models(backend, max_age=60) == ["llama3.2:3b", "qwen2.5:7b"]
    asked = len(fake_ollama.requests)
    fake_ollama.models = ("llama3.2:3b", "qwen2.5:7b", "mistral:7b")  # pulled meanwhile
    assert llm.installed_models(backend, max_age=60) == ["llama3.2:3b", "qwen2.5:7b"]
    assert llm.installed_models(backend, max_age=0) == ["llama3.2:3b", "mistral:7b", "qwen2.5:7b"]
    assert len(fake_ollama.requests) == asked  # /api/tags is not a chat request


def test_installed_models_failures_are_not_remembered(fake_ollama: FakeOllama) -> None:
    url = fake_ollama.url
    port = int(url.rsplit(":", 1)[1])
    fake_ollama.stop()
    backend = OllamaBackend(  # nothing listens there now
        host=url, default_model="llama3.2:3b", connect_timeout=1.0, read_timeout=0.5,
        fallback_context=2048,
    )  # fmt: skip
    with pytest.raises(LLMUnavailable):
        llm.installed_models(backend, max_age=60)
    with FakeOllama(port=port):  # the server comes back: asked again at once
        assert llm.installed_models(backend, max_age=60) == ["llama3.2:3b"]
