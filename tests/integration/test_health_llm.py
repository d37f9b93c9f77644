"""The "llm" health probe says which backend serves chats and whether it answers."""

from __future__ import annotations

import pytest

from core import llm, readiness
from core.config import get_settings
from tests.support.fake_ollama import FakeOllama


def test_llm_probe_is_registered() -> None:
    assert readiness.check_llm in readiness.PROBES


def test_reachable_ollama_is_healthy(ollama_env: FakeOllama) -> None:
    check = readiness.check_llm()
    assert check.name == "llm" and check.ok
    assert f"Ollama at {ollama_env.url}: reachable" in check.detail


def test_unreachable_ollama_is_unhealthy_with_the_host() -> None:
    llm.reset()
    check = readiness.check_llm()  # the suite points OLLAMA_HOST at a closed port
    assert not check.ok and "not reachable at http://127.0.0.1:9" in check.detail


@pytest.mark.llm
def test_embedded_model_is_healthy_when_it_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_BACKEND", "llamacpp")
    get_settings.cache_clear()
    llm.reset()
    try:
        check = readiness.check_llm()
        assert check.ok and "embedded llama.cpp (a small demo model): loaded" in check.detail
    finally:
        get_settings.cache_clear()
        llm.reset()


def test_missing_embedded_model_file_is_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_BACKEND", "llamacpp")
    monkeypatch.setenv("LLAMACPP_MODEL_PATH", "/nonexistent/model.gguf")
    get_settings.cache_clear()
    llm.reset()
    try:
        check = readiness.check_llm()
        assert not check.ok and "/nonexistent/model.gguf does not exist" in check.detail
    finally:
        get_settings.cache_clear()
        llm.reset()
