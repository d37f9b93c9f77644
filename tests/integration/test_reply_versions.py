"""Regenerate and compare against real PostgreSQL and Redis and the Ollama stand-in: every
version is saved in order, each is counted once, and the context a model gets holds one
version of each reply, never the one being replaced."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import chat, database, drafts, export, history, llm, quota, sessions
from core.errors import InvalidInput, NotFound, QuotaExceeded
from core.models import ConversationSession
from core.turn import Turn
from tests.support.fake_ollama import FakeOllama
from tests.support.people import identity
from tests.support.state import calls, session_row

FIRST, SECOND = "llama3.2:3b", "qwen2.5:7b"


def ask(user_id: uuid.UUID, r: redis.Redis, prompt: str, **kw: object) -> Turn:
    current = chat.turn(
        database.get_sessionmaker(), r, llm.get_backend(), user_id=user_id, prompt=prompt,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    list(current)
    return current


def again(user_id: uuid.UUID, r: redis.Redis, sid: uuid.UUID, model: str) -> Turn:
    return chat.regenerate(
        database.get_sessionmaker(), r, llm.get_backend(), user_id=user_id, session_id=sid,
        model=model,
    )  # fmt: skip


def sent(server: FakeOllama, model: str) -> list[tuple[str, str]]:
    """What the newest request for ``model`` carried: (role, content) after the persona."""
    body = [b for b in server.requests if b.get("model") == model][-1]
    return [(m["role"], m["content"]) for m in body["messages"][1:]]


def test_regenerate_keeps_the_first_reply_and_saves_the_next_version(
    dbs: Session, r: redis.Redis, ollama_env: FakeOllama
) -> None:
    ana = identity(dbs, "ana", commit=True)
    ollama_env.script(reply="First answer.")
    first = ask(ana.id, r, "What is EBITDA?", model=FIRST)
    ollama_env.script(reply="Second answer.")
    second = again(ana.id, r, first.session_id, SECOND)
    assert "".join(t for t in second if isinstance(t, str)) == "Second answer."
    assert second.version == 2 and second.again
    # The model answering again saw the question, not the reply being replaced.
    assert sent(ollama_env, SECOND) == [("user", "What is EBITDA?")]
    saved = history.read_all(r, session_id=first.session_id)
    assert [(m["role"], m["content"], m.get("version")) for m in saved] == [
        ("user", "What is EBITDA?", None),
        ("assistant", "First answer.", None),
        ("assistant", "Second answer.", 2),
    ]
    assert saved[2]["stats"]["model"] == SECOND
    assert [(c.model, c.outcome) for c in calls(dbs)] == [(FIRST, "ok"), (SECOND, "ok")]
    row = session_row(dbs, first.session_id)
    assert row.message_count == 3 and row.title == "What is EBITDA?"


def test_after_a_regenerate_the_next_prompt_carries_one_version_of_the_reply(
    dbs: Session, r: redis.Redis, ollama_env: FakeOllama
) -> None:
    ana = identity(dbs, "ana", commit=True)
    ollama_env.script(reply="Old.")
    first = ask(ana.id, r, "Q1", model=FIRST)
    ollama_env.script(reply="New.")
    list(again(ana.id, r, first.session_id, SECOND))
    ask(ana.id, r, "Q2", model=SECOND, session_id=first.session_id)
    assert sent(ollama_env, SECOND) == [("user", "Q1"), ("assistant", "New."), ("user", "Q2")]
    ask(ana.id, r, "Q3", model=FIRST, session_id=first.session_id)
    # The first model keeps its own line of thought: its own version of the first reply.
    assert sent(ollama_env, FIRST)[:2] == [("user", "Q1"), ("assistant", "Old.")]


def test_regenerating_twice_numbers_the_versions_and_a_third_time_still_answers_the_question(
    dbs: Session, r: redis.Redis, ollama_env: FakeOllama
) -> None:
    ana = identity(dbs, "ana", commit=True)
    first = ask(ana.id, r, "Q", model=FIRST)
    list(again(ana.id, r, first.session_id, FIRST))
    third = again(ana.id, r, first.session_id, FIRST)
    list(third)
    assert third.version == 3
    assert sent(ollama_env, FIRST) == [("user", "Q")]
    assert session_row(dbs, first.session_id).message_count == 4


def test_regenerate_refuses_a_chat_without_question_and_anyone_elses(
    dbs: Session, r: redis.Redis, ollama_env: FakeOllama
) -> None:
    ana = identity(dbs, "ana", commit=True)
    bob = identity(dbs, "bob", commit=True)
    empty = sessions.create(dbs, user_id=ana.id, title="Empty", model=FIRST)
    dbs.commit()
    with pytest.raises(InvalidInput, match="no question"):
        again(ana.id, r, empty.id, FIRST)
    first = ask(ana.id, r, "Mine", model=FIRST)
    with pytest.raises(NotFound):
        again(bob.id, r, first.session_id, FIRST)
    assert len(calls(dbs)) == 1 and len(history.read_all(r, session_id=first.session_id)) == 2


def drive(*turns: Turn) -> list[list[float]]:
    """Iterate turns at once on threads, as the chat page does; when each chunk came."""
    seen: list[list[float]] = [[] for _ in turns]

    def pump(index: int, current: Turn) -> None:
        for _ in current:
            seen[index].append(time.perf_counter())

    threads = [threading.Thread(target=pump, args=(i, t)) for i, t in enumerate(turns)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return seen


def test_compare_streams_two_models_at_once_and_saves_and_counts_both(
    dbs: Session, r: redis.Redis, ollama_env: FakeOllama
) -> None:
    ana = identity(dbs, "ana", commit=True)
    ollama_env.script(reply=[f"w{i} " for i in range(20)], delay=0.01)
    first, second = chat.compare(
        database.get_sessionmaker(), r, llm.get_backend(), user_id=ana.id,
        prompt="Explain gross margin", models=(FIRST, SECOND),
    )  # fmt: skip
    assert isinstance(second, Turn)
    one, other = drive(first, second)
    assert first.status == second.status == "complete"
    assert len(one) == len(other) == 20
    # Side by side: each reply had begun before the other ended (one after the other, the
    # second's first chunk would come after the first's last).
    assert max(one[0], other[0]) < min(one[-1], other[-1])
    # Each model was asked the question alone: neither saw the other's reply.
    assert sent(ollama_env, FIRST) == sent(ollama_env, SECOND) == [("user", "Explain gross margin")]
    saved = history.read_all(r, session_id=first.session_id)
    assert [m["role"] for m in saved] == ["user", "assistant", "assistant"]
    replies = sorted(saved[1:], key=lambda m: m.get("version", 1))
    assert [(m["stats"]["model"], m.get("version", 1), m.get("compare")) for m in replies] == [
        (FIRST, 1, True),
        (SECOND, 2, True),
    ]
    assert sorted(c.model for c in calls(dbs)) == [FIRST, SECOND]
    assert session_row(dbs, first.session_id).message_count == 3


def test_compare_refuses_one_model_twice_before_storing_anything(
    dbs: Session, r: redis.Redis, ollama_env: FakeOllama
) -> None:
    ana = identity(dbs, "ana", commit=True)
    with pytest.raises(InvalidInput, match="two different models"):
        chat.compare(
            database.get_sessionmaker(), r, llm.get_backend(), user_id=ana.id, prompt="Q",
            models=(FIRST, FIRST),
        )  # fmt: skip
    assert not list(dbs.scalars(select(ConversationSession)))


def test_a_second_model_refused_by_the_quota_leaves_the_first_answering_alone(
    dbs: Session, r: redis.Redis, ollama_env: FakeOllama
) -> None:
    ana = identity(dbs, "ana", commit=True)
    admin = identity(dbs, "root", "admin", commit=True)
    quota.set_daily_quota(dbs, actor=admin, user_id=ana.id, quota=1)  # one reservation fits
    dbs.commit()
    first, second = chat.compare(
        database.get_sessionmaker(), r, llm.get_backend(), user_id=ana.id, prompt="Q",
        models=(FIRST, SECOND),
    )  # fmt: skip
    assert isinstance(second, QuotaExceeded)
    list(first)
    assert [c.model for c in calls(dbs)] == [FIRST]
    assert session_row(dbs, first.session_id).message_count == 2


def test_both_drafts_of_a_comparison_cut_by_a_dead_process_are_saved_and_counted(
    dbs: Session, r: redis.Redis, ollama_env: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = identity(dbs, "ana", commit=True)
    first = ask(ana.id, r, "Q", model=FIRST)
    row_before = session_row(dbs, first.session_id).message_count
    monkeypatch.setattr(drafts, "LEASE_SECONDS", 1)
    for slot, model in ((1, FIRST), (2, SECOND)):
        message = history.make_message(
            "assistant", f"partial {slot}", status="interrupted", error=drafts.STOPPED,
            version=slot, compare=True,
        )  # fmt: skip
        usage = {
            "user_id": str(ana.id), "model": model, "backend": "ollama", "prompt_tokens": 5,
            "completion_tokens": 2, "ttft_ms": None, "duration_ms": 10.0, "tool_calls": 0,
            "reservation": None, "messages": 2 if slot == 1 else 1,
        }  # fmt: skip
        drafts._store(r, (first.session_id, slot), message, usage)
    time.sleep(1.2)
    assert drafts.recover(dbs, r, session_id=first.session_id)
    saved = history.read_all(r, session_id=first.session_id)
    assert sorted(m["content"] for m in saved[2:]) == ["partial 1", "partial 2"]
    assert session_row(dbs, first.session_id).message_count == row_before + 3
    assert not r.exists(drafts.draft_key(first.session_id, 2))


def test_exports_say_which_version_each_reply_is(
    dbs: Session, r: redis.Redis, ollama_env: FakeOllama
) -> None:
    ana = identity(dbs, "ana", commit=True)
    first = ask(ana.id, r, "Q", model=FIRST)
    list(again(ana.id, r, first.session_id, SECOND))
    md = export.to_markdown(dbs, r, user_id=ana.id, session_id=first.session_id).data.decode()
    assert "### 2 · Assistant ·" in md and "· version 1 of 2" in md and "· version 2 of 2" in md
    body = json.loads(export.to_json(dbs, r, user_id=ana.id, session_id=first.session_id).data)
    assert [(m["role"], m["version"]) for m in body["messages"]] == [
        ("user", None),
        ("assistant", 1),
        ("assistant", 2),
    ]
