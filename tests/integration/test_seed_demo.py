"""`python -m core seed-demo`: realistic demo users, conversations and usage, only when asked."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import chat_display, clock, demo, history, login, services, sessions, usage
from core.cli import main
from core.errors import Conflict
from core.models import ConversationSession, LlmCall
from core.turn import TurnStats

NOW = datetime(2026, 5, 20, 15, 30, tzinfo=UTC)
PASSWORD = "demo password 123"


@pytest.fixture
def seeded(dbs: Session, r: redis.Redis) -> demo.SeedReport:
    clock.set_source(lambda: NOW)
    report = demo.seed(dbs, r, users=3, sessions_per_user=40, password=PASSWORD, random_seed=11)
    dbs.commit()
    return report


def test_seed_creates_the_users_sessions_histories_and_usage(
    dbs: Session, r: redis.Redis, seeded: demo.SeedReport
) -> None:
    assert seeded.usernames == ["maria.lopez", "james.chen", "aisha.khan"]
    assert seeded.sessions == 120
    assert dbs.scalar(select(func.count()).select_from(ConversationSession)) == 120
    assert dbs.scalar(select(func.count()).select_from(LlmCall)) == seeded.calls
    stored = sum(
        history.count(r, session_id=sid) for sid in dbs.scalars(select(ConversationSession.id))
    )
    assert stored == seeded.messages
    identity = login.authenticate(
        dbs, services.redis_client(), username="maria.lopez", password=PASSWORD
    )
    assert identity.display_name == "María López"


def test_seeded_rows_agree_with_their_histories_and_span_sixty_days(
    dbs: Session, r: redis.Redis, seeded: demo.SeedReport
) -> None:
    for row in dbs.scalars(select(ConversationSession)):
        messages = history.read_all(r, session_id=row.id)
        assert row.message_count == len(messages)
        calls = dbs.scalars(select(LlmCall).where(LlmCall.session_id == row.id)).all()
        assert row.prompt_tokens == sum(c.prompt_tokens for c in calls)
        assert row.completion_tokens == sum(c.completion_tokens for c in calls)
        assert len(calls) * 2 == len(messages)
        assert NOW - timedelta(days=61) <= row.created_at <= row.updated_at <= NOW
        assert [m["role"] for m in messages[:2]] == ["user", "assistant"]
        # Titled as the app titles a session: the start of its first question.
        assert messages[0]["content"].startswith(row.title.removesuffix("…"))
    first, last = dbs.execute(
        select(func.min(LlmCall.created_at), func.max(LlmCall.created_at))
    ).one()
    assert last - first > timedelta(days=45)


def test_seeded_usage_looks_like_real_use(dbs: Session, seeded: demo.SeedReport) -> None:
    outcomes = dict(
        dbs.execute(select(LlmCall.outcome, func.count()).group_by(LlmCall.outcome)).all()
    )
    assert outcomes["ok"] > 0.85 * seeded.calls
    assert outcomes.get("error", 0) >= 1
    models = set(dbs.scalars(select(LlmCall.model).distinct()))
    assert models <= {m.name for m in demo.MODELS} and len(models) >= 3
    rng = usage.last_days(60)
    board = usage.dashboard(dbs, user_id=None, start=rng.start, end=rng.end)
    assert board.kpis.iloc[0]["requests"] == seeded.calls
    assert not board.tokens_per_day.empty and not board.top_sessions.empty
    fast = board.latency_by_model.set_index("model")["tokens_per_s_p50"]
    assert fast["SmolLM2-135M-Instruct.Q4_1"] > fast["llama3.1:8b"]


def test_error_replies_are_marked_in_the_history(
    dbs: Session, r: redis.Redis, seeded: demo.SeedReport
) -> None:
    errors = dbs.scalars(select(LlmCall).where(LlmCall.outcome == "error")).all()
    call = errors[0]
    assert call.user_id is not None and call.session_id is not None
    replies = [
        m
        for m in sessions.messages(dbs, r, user_id=call.user_id, session_id=call.session_id)
        if m.get("status") == "error"
    ]
    assert replies and replies[0]["error"]


def test_a_second_seed_refuses_and_names_the_demo_users(
    dbs: Session, r: redis.Redis, seeded: demo.SeedReport
) -> None:
    with pytest.raises(Conflict, match=r"users: aisha\.khan, james\.chen, maria\.lopez\)"):
        demo.seed(dbs, r, users=1, sessions_per_user=1)
    assert dbs.scalar(select(func.count()).select_from(ConversationSession)) == 120


def test_replace_recreates_the_demo_data_and_removes_old_histories(
    dbs: Session, r: redis.Redis, seeded: demo.SeedReport
) -> None:
    old_ids = list(dbs.scalars(select(ConversationSession.id)))
    report = demo.seed(dbs, r, users=1, sessions_per_user=2, password=PASSWORD, replace=True)
    dbs.commit()
    assert report.usernames == ["maria.lopez"]
    assert dbs.scalar(select(func.count()).select_from(ConversationSession)) == 2
    assert all(history.count(r, session_id=sid) == 0 for sid in old_ids)


def test_the_command_prints_usernames_and_a_generated_password(
    dbs: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["seed-demo", "--users", "2", "--sessions", "3", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "created 2 demo users, 6 sessions" in out
    assert "usernames: maria.lopez, james.chen" in out
    password = out.split("password: ", 1)[1].strip()
    assert len(password) >= 12
    assert login.authenticate(
        dbs, services.redis_client(), username="james.chen", password=password
    )
    assert main(["seed-demo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Demo data already exists (users: james.chen, maria.lopez)")


def test_the_command_refuses_a_weak_password(
    capsys: pytest.CaptureFixture[str], dbs: Session
) -> None:
    assert main(["seed-demo", "--password", "short"]) == 2
    assert "Password must be at least 12 characters" in capsys.readouterr().err
    assert dbs.scalar(select(func.count()).select_from(ConversationSession)) == 0


def test_histories_are_json_messages_core_history_can_read(
    dbs: Session, r: redis.Redis, seeded: demo.SeedReport
) -> None:
    replies = []
    for sid in dbs.scalars(select(ConversationSession.id)):
        raw = r.lrange(history.key(sid), 0, 0)[0]
        assert json.loads(raw)["role"] == "user"
        replies += [m for m in history.read_all(r, session_id=sid) if m["role"] == "assistant"]
    failed = [m for m in replies if m.get("status") == "error"]
    assert all(m["error"] and not m["content"] for m in failed)
    answered = [m for m in replies if m.get("status") != "error"]
    assert answered and all(m["stats"]["model"] for m in answered)


def test_replies_carry_the_stats_the_chat_records(
    dbs: Session, r: redis.Redis, seeded: demo.SeedReport
) -> None:
    fields = {f.name for f in dataclasses.fields(TurnStats)}
    rows = dbs.execute(select(ConversationSession.id, ConversationSession.completion_tokens))
    for sid, completion_tokens in rows:
        replies = [m for m in history.read_all(r, session_id=sid) if m["role"] == "assistant"]
        assert all(set(m["stats"]) == fields for m in replies)
        assert sum(m["stats"]["completion_tokens"] for m in replies) == completion_tokens
    reply = next(
        m
        for sid in dbs.scalars(select(ConversationSession.id))
        for m in history.read_all(r, session_id=sid)
        if m.get("stats", {}).get("outcome") == "ok"
    )
    speed = reply["stats"]["tokens_per_second"]
    assert speed > 0 and f"{speed:.1f} tokens/s" in chat_display.caption(reply["stats"])
