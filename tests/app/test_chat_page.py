"""The chat page under Streamlit's AppTest, on real PostgreSQL and Redis and a fake Ollama."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from core import history, sessions
from core.accounts import Identity
from core.config import get_settings
from core.models import ConversationSession, LlmCall, PromptTemplate
from tests.conftest import ROOT
from tests.support.chat_failures import LLM_FAILURES, LLMFailure, says_all
from tests.support.fake_ollama import FakeOllama
from tests.support.people import identity
from tests.support.state import calls

PAGE = str(ROOT / "pages" / "chat.py")


@pytest.fixture
def ana(dbs: Session, r: redis.Redis, ollama_env: FakeOllama) -> Identity:
    return identity(dbs, "ana", commit=True)


@pytest.fixture(autouse=True)
def _clear_streamlit_caches() -> Iterator[None]:
    yield
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def page(identity: Identity, session: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=20)
    at.session_state["identity"] = identity
    if session is not None:
        at.query_params["session"] = session
    return at.run()


def texts(at: AppTest) -> list[str]:
    return [md.value for msg in at.chat_message for md in msg.markdown]


def test_prompt_streams_a_reply_with_its_stats_caption(
    ana: Identity, ollama_env: FakeOllama
) -> None:
    ollama_env.script(reply=["EBITDA", " costs", " $5", " bn"])
    at = page(ana)
    assert not at.exception and not at.error
    at.chat_input[0].set_value("What is EBITDA?").run()
    assert not at.exception and not at.error
    assert texts(at) == ["What is EBITDA?", "EBITDA costs \\$5 bn"]
    captions = [c.value for c in at.caption]
    assert any(c.startswith("4 tokens · ") and "first token" in c for c in captions)
    assert uuid.UUID(at.query_params["session"])


def test_page_says_which_backend_and_model_answer(ana: Identity, ollama_env: FakeOllama) -> None:
    at = page(ana)
    assert at.selectbox(key="model").options == ["llama3.2:3b", "qwen2.5:7b"]
    assert any(f"llama3.2:3b via Ollama at {ollama_env.url}" in c.value for c in at.caption)


def test_a_missing_configured_model_is_named_and_an_installed_one_answers(
    ana: Identity, ollama_env: FakeOllama
) -> None:
    ollama_env.models = ("nomic-embed-text", "qwen2.5:7b")  # OLLAMA_MODEL llama3.2:3b is not
    at = page(ana)
    assert at.selectbox(key="model").options == ["qwen2.5:7b"]  # embedding models cannot chat
    assert at.selectbox(key="model").value == "qwen2.5:7b"
    (warning,) = [w.value for w in at.warning]  # said before anything is sent
    assert "llama3.2:3b is not installed" in warning and "answering with qwen2.5:7b" in warning
    at.chat_input[0].set_value("What is a bond?").run()
    assert not at.exception and not at.error
    assert ollama_env.requests[-1]["model"] == "qwen2.5:7b"
    assert texts(at)[0] == "What is a bond?" and len(texts(at)) == 2


def test_session_reloads_from_the_url(ana: Identity, ollama_env: FakeOllama) -> None:
    first = page(ana)
    first.chat_input[0].set_value("What is a bond?").run()
    sid = first.query_params["session"]

    at = page(ana, session=sid)
    assert not at.exception and not at.error
    assert texts(at) == ["What is a bond?", "Revenue is the top line."]
    assert any(c.value.startswith("6 tokens") for c in at.caption)


def test_another_users_session_is_refused_like_an_unknown_one(
    ana: Identity, dbs: Session, r: redis.Redis
) -> None:
    bob = identity(dbs, "bob", commit=True)
    theirs = sessions.create(dbs, user_id=bob.id, title="Bob's plans")
    dbs.commit()
    history.append(r, session_id=theirs.id, message=history.make_message("user", "secret"))

    for sid in (str(theirs.id), str(uuid.uuid4()), "not-a-uuid"):
        at = page(ana, session=sid)
        assert [e.value for e in at.error] == ["Session not found."]
        assert texts(at) == []
        assert not at.chat_input  # stopped before the input


@pytest.mark.parametrize("failure", LLM_FAILURES)
def test_a_failed_reply_says_why_keeps_the_prompt_and_saves_the_partial_reply(
    ana: Identity,
    ollama_env: FakeOllama,
    dbs: Session,
    r: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    failure: LLMFailure,
) -> None:
    failure.bring_about(ollama_env, monkeypatch)
    at = page(ana)
    at.chat_input[0].set_value("Explain WACC").run()
    assert not at.exception
    (shown,) = [e.value for e in at.error if e.value.startswith("Reply failed: ")]
    assert says_all(shown, failure), shown
    assert texts(at)[0] == "Explain WACC"
    sid = at.query_params["session"]

    question, reply = history.read_all(r, session_id=sid)
    assert question["content"] == "Explain WACC"
    assert reply["content"] == failure.partial and reply["status"] == "error"
    assert says_all(reply["error"], failure)
    dbs.expire_all()
    (call,) = dbs.scalars(select(LlmCall))
    assert call.outcome == "error" and says_all(call.error or "", failure)

    again = page(ana, session=sid)  # the session reopened: the prompt and the marked reply
    assert texts(again)[0] == "Explain WACC"
    assert "".join(texts(again)[1:]) == failure.partial
    assert any(
        e.value.startswith("Reply failed: ") and says_all(e.value, failure) for e in again.error
    )


@pytest.mark.parametrize("prompt", ["   ", " \n\t "])
def test_a_blank_prompt_is_ignored(
    ana: Identity, ollama_env: FakeOllama, dbs: Session, r: redis.Redis, prompt: str
) -> None:
    at = page(ana)
    at.chat_input[0].set_value(prompt).run()
    assert not at.exception and not at.error and texts(at) == []
    assert "session" not in at.query_params
    dbs.expire_all()
    assert dbs.scalars(select(ConversationSession)).all() == [] and r.dbsize() == 0
    assert ollama_env.requests == []


def test_a_used_up_quota_is_explained_and_the_model_not_called(
    ana: Identity, ollama_env: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = page(ana)
    at.chat_input[0].set_value("What is EBITDA?").run()
    monkeypatch.setenv("DAILY_TOKEN_QUOTA", "1")  # the first turn used more than that
    get_settings.cache_clear()
    asked = len(ollama_env.requests)
    at.chat_input[0].set_value("And EBIT?").run()
    assert not at.exception
    (error,) = at.error
    assert error.value.startswith("Daily token quota reached: ")
    assert at.code[0].value == "And EBIT?"  # offered back
    assert len(ollama_env.requests) == asked


def test_an_ollama_without_models_is_announced_with_the_pull_to_run(
    ana: Identity, ollama_env: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_BACKEND", "auto")
    get_settings.cache_clear()
    ollama_env.models = ()  # Ollama answers; its model pull has not finished
    at = page(ana)
    assert not at.exception
    info, tools_note = at.info
    assert "embedded llama.cpp (a small demo model)" in info.value
    assert "cannot call tools" in tools_note.value  # the demo model: figures are not checked
    assert f"Ollama at {ollama_env.url} has no model yet" in info.value
    assert "`ollama pull llama3.2:3b`" in info.value


def test_over_limit_prompt_is_refused_and_offered_back(ana: Identity) -> None:
    at = page(ana)
    at.chat_input[0].set_value("x" * 16_001).run()
    assert any("limit is 16,000 characters" in e.value for e in at.error)
    assert at.expander and at.code[0].value == "x" * 16_001


def test_embedded_model_is_announced_as_a_small_demo(
    ana: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core import llm
    from core.config import get_settings

    monkeypatch.setenv("LLM_BACKEND", "llamacpp")
    get_settings.cache_clear()
    llm.reset()
    at = page(ana)
    info, tools_note = at.info
    assert "embedded llama.cpp (a small demo model)" in info.value
    assert "For exact figures use the SQL box" in tools_note.value
    assert "run Ollama" in info.value


def test_redis_down_refuses_the_prompt_and_offers_it_back(
    ana: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core import services
    from core.config import get_settings

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    services.reset()
    try:
        at = page(ana)
        at.chat_input[0].set_value("What is a swap?").run()
        (error,) = at.error
        assert error.value.startswith("Redis is not reachable at redis://127.0.0.1:1/0: "), error
        assert at.code[0].value == "What is a swap?"
        assert "session" not in at.query_params
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        services.reset()


# --- regenerate, compare, templates ---------------------------------------------------------


def models_called(dbs: Session) -> list[str]:
    return [c.model for c in calls(dbs)]


def test_regenerate_answers_again_with_the_chosen_model_and_shows_both_versions(
    ana: Identity, ollama_env: FakeOllama, r: redis.Redis, dbs: Session
) -> None:
    ollama_env.script(reply="First take.")
    at = page(ana)
    at.chat_input[0].set_value("What is EBITDA?").run()
    assert not at.exception and not at.error
    ollama_env.script(reply="Second take.")
    at.selectbox(key="model").set_value("qwen2.5:7b").run()
    at.button(key="regenerate").click().run()
    assert not at.exception and not at.error
    assert any(c.value == "Version 2 · qwen2.5:7b" for c in at.caption)
    sid = at.query_params["session"]
    saved = history.read_all(r, session_id=sid)
    assert [m["content"] for m in saved] == ["What is EBITDA?", "First take.", "Second take."]
    assert models_called(dbs) == ["llama3.2:3b", "qwen2.5:7b"]

    reopened = page(ana, sid[0] if isinstance(sid, list) else sid)
    assert not reopened.exception
    labels = [tab.label for tab in reopened.tabs]
    assert labels == ["Version 2 of 2 · qwen2.5:7b (newest)", "Version 1 of 2 · llama3.2:3b"]
    shown = [md.value for tab in reopened.tabs for md in tab.markdown]
    assert shown == ["Second take.", "First take."]  # the newest first: the tab open at first


def test_no_regenerate_button_before_the_first_question(ana: Identity) -> None:
    at = page(ana)
    assert not [b for b in at.button if b.key == "regenerate"]


def test_compare_answers_one_prompt_with_two_models_side_by_side(
    ana: Identity, ollama_env: FakeOllama, r: redis.Redis, dbs: Session
) -> None:
    ollama_env.script(reply="Gross margin is revenue less cost of sales.")
    at = page(ana)
    at.toggle(key="chat_compare").set_value(True).run()
    assert at.selectbox(key="chat_second_model").options == ["qwen2.5:7b"]
    at.chat_input[0].set_value("Explain gross margin").run()
    assert not at.exception and not at.error
    assert sorted(models_called(dbs)) == ["llama3.2:3b", "qwen2.5:7b"]
    replies = [m for m in history.read_all(r, session_id=at.query_params["session"])][1:]
    assert sorted(m.get("version", 1) for m in replies) == [1, 2]
    assert all(m.get("compare") for m in replies)
    captions = [c.value for c in at.caption]
    assert sum("tokens/s" in c for c in captions) == 2  # both replies with their stats

    reopened = page(ana, at.query_params["session"])
    heads = [md.value for md in reopened.markdown if md.value.startswith("**Version")]
    assert heads == ["**Version 1 of 2 · llama3.2:3b**", "**Version 2 of 2 · qwen2.5:7b**"]
    assert len(reopened.columns) >= 2


def test_compare_with_one_model_available_says_there_is_nothing_to_compare(
    ana: Identity, ollama_env: FakeOllama
) -> None:
    ollama_env.models = ("llama3.2:3b",)
    at = page(ana)
    at.toggle(key="chat_compare").set_value(True).run()
    assert any("nothing to compare it with" in c.value for c in at.sidebar.caption)


def test_a_shipped_template_filled_in_is_sent_as_the_prompt(
    ana: Identity, ollama_env: FakeOllama
) -> None:
    at = page(ana)
    at.selectbox(key="template_pick").set_value(2).run()  # Variance explanation
    at.text_input(key="template_field-line_item").set_value("Freight costs")
    at.text_input(key="template_field-period").set_value("Q3 2025")
    at.button(key="template_ask").click().run()
    assert [e.value for e in at.error] == ["Fill in: budget, actual, context."]
    assert not ollama_env.requests  # nothing sent with blanks left
    for name, value in (("budget", "$1.2M"), ("actual", "$1.5M"), ("context", "fuel prices")):
        at.text_input(key=f"template_field-{name}").set_value(value)
    at.button(key="template_ask").click().run()
    assert not at.exception and not at.error
    asked = ollama_env.requests[-1]["messages"][-1]["content"]
    assert asked.startswith("Explain the variance between budget and actual for Freight costs")
    assert "Budget: $1.2M. Actual: $1.5M." in asked


def test_a_saved_template_is_the_users_own_and_can_be_deleted(ana: Identity, dbs: Session) -> None:
    at = page(ana)
    at.text_input(key="template_name").set_value("Peer check")
    at.text_area(key="template_body").set_value("Compare {company} with its peers.")
    at.button[[b.label for b in at.button].index("Save template")].click().run()
    assert not at.exception and not at.error
    assert any("Template 'Peer check' saved." in s.value for s in at.success)
    options = at.selectbox(key="template_pick").options
    assert "Peer check (yours)" in options
    bob = identity(dbs, "bob", commit=True)
    assert "Peer check (yours)" not in page(bob).selectbox(key="template_pick").options

    at.selectbox(key="template_pick").set_value(options.index("Peer check (yours)")).run()
    (row,) = dbs.scalars(select(PromptTemplate))
    at.button(key=f"template_delete-{row.id}").click().run()
    assert not at.exception
    dbs.expire_all()
    assert not list(dbs.scalars(select(PromptTemplate)))
