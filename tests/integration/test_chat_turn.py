"""core.chat.turn against real PostgreSQL and Redis and a server speaking Ollama's protocol."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from core import (
    accounts,
    chat,
    chat_display,
    clock,
    context_window,
    database,
    export,
    history,
    llm,
    repetition,
    sessions,
    turn,
)
from core.config import get_settings
from core.errors import (
    EmptyPrompt,
    InvalidInput,
    LLMError,
    LLMUnavailable,
    ModelNotFound,
    NotFound,
    QuotaExceeded,
    ServiceUnavailable,
)
from core.models import ConversationSession
from tests.support.fake_ollama import FakeOllama
from tests.support.state import calls, session_row

MODEL = "llama3.2:3b"


@pytest.fixture
def user_id(dbs: Session) -> uuid.UUID:
    user = accounts.create_user(
        dbs, username="ana", email="ana@example.com", display_name="Ana", password="x" * 12
    )
    dbs.commit()
    return user.id


@pytest.fixture
def env(ollama_env: FakeOllama, r: redis.Redis, dbs: Session) -> FakeOllama:
    return ollama_env


def start(user_id: uuid.UUID, prompt: str = "What is EBITDA?", **kw: object) -> turn.Turn:
    return chat.turn(
        database.get_sessionmaker(),
        kw.pop("r", None) or _redis(),  # type: ignore[arg-type]
        llm.get_backend(),
        user_id=user_id,
        prompt=prompt,
        **kw,  # type: ignore[arg-type]
    )


def _redis() -> redis.Redis:
    from core import services

    return services.redis_client()


def session_count(dbs: Session) -> int:
    dbs.expire_all()
    return int(dbs.scalar(select(func.count()).select_from(ConversationSession)) or 0)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- the normal turn ------------------------------------------------------------------------


def test_reply_streams_and_everything_is_recorded(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    env.script(reply=["EBITDA", " is", " earnings", " before", " interest."])
    ok_before = metric("ledger_llm_requests_total", model=MODEL, backend="ollama", outcome="ok")
    ttft_before = metric("ledger_llm_time_to_first_token_seconds_count", model=MODEL)
    duration_before = metric("ledger_llm_request_duration_seconds_count", model=MODEL)
    tokens_before = metric("ledger_llm_completion_tokens_total", model=MODEL)
    rate_before = metric("ledger_llm_tokens_per_second_count", model=MODEL)
    t = start(user_id, "What is EBITDA?")
    assert list(t) == ["EBITDA", " is", " earnings", " before", " interest."]

    assert t.status == "complete" and t.error is None and t.storage_error is None
    assert t.stats is not None
    assert t.stats.completion_tokens == 5 and not t.stats.estimated
    assert t.stats.ttft_ms is not None and t.stats.tokens_per_second
    assert chat_display.caption(t.stats).startswith("5 tokens · ")

    stored = history.read_all(r, session_id=t.session_id)
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "What is EBITDA?"),
        ("assistant", "EBITDA is earnings before interest."),
    ]
    assert "status" not in stored[1]
    assert stored[1]["stats"]["completion_tokens"] == 5

    row = sessions.get_for_owner(dbs, user_id=user_id, session_id=t.session_id)
    assert row.title == "What is EBITDA?"
    assert row.message_count == 2 and row.model == MODEL
    assert row.completion_tokens == 5 and row.prompt_tokens == t.stats.prompt_tokens > 0

    (call,) = calls(dbs)
    assert call.outcome == "ok" and call.error is None
    assert call.session_id == t.session_id and call.backend == "ollama" and call.model == MODEL
    assert call.completion_tokens == 5 and call.ttft_ms is not None and call.duration_ms > 0
    after = metric("ledger_llm_requests_total", model=MODEL, backend="ollama", outcome="ok")
    assert after == ok_before + 1
    assert metric("ledger_llm_time_to_first_token_seconds_count", model=MODEL) == ttft_before + 1
    assert metric("ledger_llm_request_duration_seconds_count", model=MODEL) == duration_before + 1
    assert metric("ledger_llm_completion_tokens_total", model=MODEL) == tokens_before + 5
    assert metric("ledger_llm_tokens_per_second_count", model=MODEL) == rate_before + 1
    assert metric("ledger_llm_active_streams") == 0


def test_a_turn_moves_the_sessions_updated_time_and_adds_to_its_totals(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session
) -> None:
    opened = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    clock.set_source(lambda: opened)
    first = start(user_id, "What is EBITDA?")
    list(first)
    later = opened + timedelta(hours=2, minutes=5)
    clock.set_source(lambda: later)
    second = start(user_id, "And EBIT?", session_id=first.session_id)
    list(second)

    row = session_row(dbs, first.session_id)
    assert row.created_at == opened and row.updated_at == later
    assert row.message_count == 4
    assert first.stats is not None and second.stats is not None
    assert row.prompt_tokens == first.stats.prompt_tokens + second.stats.prompt_tokens
    completion = first.stats.completion_tokens + second.stats.completion_tokens
    assert row.completion_tokens == completion == 12  # two replies of 6 chunks


def test_the_active_streams_gauge_counts_a_reply_while_it_streams(
    env: FakeOllama, user_id: uuid.UUID
) -> None:
    before = metric("ledger_llm_active_streams")
    t = start(user_id, "What is EBITDA?")
    assert metric("ledger_llm_active_streams") == before  # nothing is streaming yet
    next(t)
    assert metric("ledger_llm_active_streams") == before + 1
    list(t)
    assert metric("ledger_llm_active_streams") == before


def test_prompt_tokens_the_model_reports_are_counted(env: FakeOllama, user_id: uuid.UUID) -> None:
    before = metric("ledger_llm_prompt_tokens_total", model=MODEL)
    list(start(user_id, "What is EBITDA?"))
    reported = env.finals[-1]["prompt_eval_count"]  # what the model said it read
    assert reported > 0
    assert metric("ledger_llm_prompt_tokens_total", model=MODEL) == before + reported


def test_persona_comes_first_and_history_follows(env: FakeOllama, user_id: uuid.UUID) -> None:
    first = start(user_id, "What is EBITDA?")
    list(first)
    list(start(user_id, "And EBIT?", session_id=first.session_id))
    sent = env.requests[-1]
    assert sent["messages"][0]["role"] == "system"
    assert "finance" in sent["messages"][0]["content"]
    assert [m["content"] for m in sent["messages"][1:]] == [
        "What is EBITDA?",
        "Revenue is the top line.",
        "And EBIT?",
    ]


def cost(text: str) -> int:
    """What a message costs in the budget with the Ollama backend (no tokenizer at hand)."""
    return llm.estimate_tokens(text) + context_window.MESSAGE_OVERHEAD_TOKENS


# reported by /api/show, the window used; LLM_CONTEXT_TOKENS=2048, LLM_MAX_CONTEXT_TOKENS=8192
CONTEXT_WINDOWS = [
    pytest.param(4096, 4096, id="model-longer-than-the-fallback"),
    pytest.param(1024, 1024, id="model-shorter-than-the-fallback"),
    pytest.param(None, 2048, id="model-reports-no-length"),
    pytest.param(131_072, 8192, id="model-longer-than-the-cap"),
]


@pytest.mark.parametrize(("reported", "window"), CONTEXT_WINDOWS)
def test_context_window_is_the_models_length_else_the_setting_never_above_the_cap(
    env: FakeOllama,
    user_id: uuid.UUID,
    r: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    reported: int | None,
    window: int,
) -> None:
    monkeypatch.setenv("LLM_CONTEXT_TOKENS", "2048")
    monkeypatch.setenv("LLM_MAX_CONTEXT_TOKENS", "8192")
    monkeypatch.setenv("LLM_MAX_REPLY_TOKENS", "256")
    get_settings.cache_clear()
    env.context_length = reported
    first = start(user_id, "Start.")
    list(first)
    for i in range(400):  # about 22,000 tokens: more than any window above holds
        note = history.make_message("user", f"note {i:03d} " + "figures " * 18)
        history.append(r, session_id=first.session_id, message=note)
    list(start(user_id, "Latest question?", session_id=first.session_id))

    sent = env.requests[-1]
    assert env.shown == [MODEL]  # the length came from /api/show (asked once, then known)
    assert sent["options"]["num_ctx"] == window
    budget = window - 256  # the reply's reserve (LLM_MAX_REPLY_TOKENS) is kept free
    system, *kept = sent["messages"]
    assert kept[-1]["content"] == "Latest question?"
    assert kept[-2]["content"].startswith("note 399 ")  # the newest history is kept
    used = cost(system["content"]) + sum(cost(m["content"]) for m in kept)
    stored = [m["content"] for m in history.read_all(r, session_id=first.session_id)]
    older = stored[stored.index(kept[0]["content"]) - 1]  # the newest message left out
    assert used <= budget < used + cost(older)  # filled up to the budget, not beyond


def test_a_session_titled_new_chat_takes_its_first_prompt_as_title(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session
) -> None:
    row = sessions.create(dbs, user_id=user_id)
    dbs.commit()
    list(start(user_id, "Explain  duration\nof a bond", session_id=row.id))
    dbs.expire_all()
    assert sessions.get_for_owner(dbs, user_id=user_id, session_id=row.id).title == (
        "Explain duration of a bond"
    )


def test_control_characters_and_unicode_reach_the_model_and_history_cleaned(
    env: FakeOllama, user_id: uuid.UUID, r: redis.Redis
) -> None:
    t = start(user_id, "P/E of 李宁 ≈ 12× \x00\x1b? 👩‍💼 مرحبا")
    list(t)
    expected = "P/E of 李宁 ≈ 12× ? 👩‍💼 مرحبا"
    assert env.requests[-1]["messages"][-1]["content"] == expected
    assert history.read_all(r, session_id=t.session_id)[0]["content"] == expected


# --- refused before anything is written -----------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   \n\t  "])
def test_empty_prompt_is_ignored_and_nothing_is_written(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis, prompt: str
) -> None:
    with pytest.raises(EmptyPrompt):
        start(user_id, prompt)
    assert session_count(dbs) == 0 and r.dbsize() == 0 and env.requests == []


def test_prompt_over_the_limit_is_refused_with_the_limit(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    with pytest.raises(InvalidInput, match="limit is 16,000 characters"):
        start(user_id, "x" * 16_001)
    assert session_count(dbs) == 0 and r.dbsize() == 0 and env.requests == []


def test_another_users_session_is_not_found_and_untouched(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    other = accounts.create_user(
        dbs, username="bob", email="bob@example.com", display_name="Bob", password="y" * 12
    )
    theirs = sessions.create(dbs, user_id=other.id, title="Private")
    dbs.commit()
    with pytest.raises(NotFound, match="Session not found"):
        start(user_id, "Show me", session_id=theirs.id)
    assert history.count(r, session_id=theirs.id) == 0 and env.requests == []


def test_quota_is_checked_before_the_model_is_called(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    list(start(user_id, "First"))
    monkeypatch.setenv("DAILY_TOKEN_QUOTA", "1")
    get_settings.cache_clear()
    requests_before = len(env.requests)
    refusals = metric("ledger_quota_refusals_total")
    with pytest.raises(QuotaExceeded, match="Daily token quota"):
        start(user_id, "Second")
    assert len(env.requests) == requests_before and session_count(dbs) == 1
    assert metric("ledger_quota_refusals_total") == refusals + 1


def test_redis_down_at_send_time_writes_nothing(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    with pytest.raises(
        ServiceUnavailable, match=r"Redis is not reachable at redis://127\.0\.0\.1:1"
    ):
        start(user_id, "What is EBITDA?", r=dead)
    assert session_count(dbs) == 0 and calls(dbs) == [] and env.requests == []


def test_redis_down_when_continuing_a_session_changes_nothing(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session
) -> None:
    first = start(user_id, "What is EBITDA?")
    list(first)
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    with pytest.raises(ServiceUnavailable, match="Redis is not reachable"):
        start(user_id, "And EBIT?", session_id=first.session_id, r=dead)
    dbs.expire_all()
    row = sessions.get_for_owner(dbs, user_id=user_id, session_id=first.session_id)
    assert row.message_count == 2 and len(calls(dbs)) == 1 and len(env.requests) == 1


def test_postgres_down_at_send_time_writes_nothing(
    env: FakeOllama, user_id: uuid.UUID, r: redis.Redis
) -> None:
    engine = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/ledger", connect_args={"connect_timeout": 2}
    )
    try:
        with pytest.raises(ServiceUnavailable, match=r"PostgreSQL is not reachable at .*:1/ledger"):
            chat.turn(
                sessionmaker(engine),
                r,
                llm.get_backend(),
                user_id=user_id,
                prompt="What is EBITDA?",
            )
    finally:
        engine.dispose()
    assert r.dbsize() == 0 and env.requests == []


# --- failures while the model answers -------------------------------------------------------


FAILURES = [
    pytest.param(
        {"failure": "error", "after": 2}, LLMError, "middle of the reply", id="error-mid-stream"
    ),
    pytest.param(
        {"failure": "drop", "after": 2}, LLMUnavailable, "dropped", id="dropped-mid-stream"
    ),
    pytest.param(
        {"failure": "hang", "after": 2}, LLMUnavailable, "sent nothing for 0.5 s", id="hang"
    ),
]


@pytest.mark.parametrize(("script", "error", "message"), FAILURES)
def test_failure_mid_reply_keeps_prompt_and_partial_reply_marked_error(
    env: FakeOllama,
    user_id: uuid.UUID,
    dbs: Session,
    r: redis.Redis,
    script: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    env.script(reply=["Net", " income", " is", " profit"], **script)  # type: ignore[arg-type]
    t = start(user_id, "What is net income?")
    got: list[str] = []
    with pytest.raises(error, match=message):
        for text in t:
            got.append(text)
    assert got == ["Net", " income"]
    user_msg, reply = history.read_all(r, session_id=t.session_id)
    assert user_msg["content"] == "What is net income?"
    assert reply["content"] == "Net income" and reply["status"] == "error"
    assert message in reply["error"]
    (call,) = calls(dbs)
    assert call.outcome == "error" and call.error is not None and message in call.error
    assert call.completion_tokens == 2  # estimated from the chunks that arrived
    assert t.stats is not None and t.stats.estimated


def test_model_not_pulled_keeps_the_prompt_and_says_how_to_pull(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    t = start(user_id, "Hello", model="mistral:7b")
    with pytest.raises(ModelNotFound, match="ollama pull mistral:7b"):
        list(t)
    user_msg, reply = history.read_all(r, session_id=t.session_id)
    assert user_msg["content"] == "Hello"
    assert reply["status"] == "error" and "ollama pull mistral:7b" in reply["error"]
    (call,) = calls(dbs)
    assert call.outcome == "error" and call.model == "mistral:7b"


def test_ollama_unreachable_keeps_the_prompt_and_names_the_host(
    user_id: uuid.UUID, dbs: Session, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_BACKEND", "ollama")
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    get_settings.cache_clear()
    llm.reset()
    t = start(user_id, "Hello")
    with pytest.raises(LLMUnavailable, match=r"not reachable at http://127\.0\.0\.1:9"):
        list(t)
    user_msg, reply = history.read_all(r, session_id=t.session_id)
    assert user_msg["content"] == "Hello" and reply["status"] == "error"
    assert [c.outcome for c in calls(dbs)] == ["error"]
    get_settings.cache_clear()
    llm.reset()


# --- stopped by the user --------------------------------------------------------------------


def test_closing_mid_stream_saves_the_partial_reply_as_interrupted(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    env.script(chunks=50, delay=0.002)
    cancelled = metric(
        "ledger_llm_requests_total", model=MODEL, backend="ollama", outcome="cancelled"
    )
    t = start(user_id, "Tell me a long story about bonds")
    got = [next(t), next(t), next(t)]
    t.close()  # what Streamlit does when Stop is clicked or the page is left
    assert t.status == "interrupted"
    reply = history.read_all(r, session_id=t.session_id)[1]
    assert reply["content"] == "".join(got) and reply["status"] == "interrupted"
    (call,) = calls(dbs)
    assert call.outcome == "cancelled" and call.completion_tokens == 3
    after = metric("ledger_llm_requests_total", model=MODEL, backend="ollama", outcome="cancelled")
    assert after == cancelled + 1
    assert metric("ledger_llm_active_streams") == 0


def test_a_reply_cut_at_the_length_limit_is_saved_marked_truncated(
    env: FakeOllama,
    user_id: uuid.UUID,
    dbs: Session,
    r: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_MAX_REPLY_TOKENS", "100")
    get_settings.cache_clear()
    env.script(reply=[f"w{i} " for i in range(200)])  # more than num_predict allows
    t = start(user_id, "Explain every covenant")
    text = "".join(e for e in t if isinstance(e, str))
    limit = env.requests[-1]["options"]["num_predict"]
    assert t.status == "truncated" and len(text.split()) == limit
    assert t.error is not None and f"length limit ({limit:,} tokens)" in t.error
    reply = history.read_all(r, session_id=t.session_id)[1]
    assert reply["status"] == "truncated" and reply["error"] == t.error
    assert chat_display.status_note(reply) == t.error
    (call,) = calls(dbs)
    assert call.outcome == "truncated" and call.completion_tokens == limit
    md = export.to_markdown(dbs, r, user_id=user_id, session_id=t.session_id).data.decode()
    assert "· truncated" in md and "> Note: Cut off at the length limit" in md


def test_a_reply_repeating_itself_is_stopped_early_and_marked(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    env.script(reply=["The CAGR is "] + ["0.04% "] * 900)  # a loop to the length limit
    t = start(user_id, "CAGR from $120M in 2019 to $210M in 2024?")
    text = "".join(e for e in t if isinstance(e, str))
    assert t.status == "truncated" and t.error is not None
    assert "kept repeating itself" in t.error and "0.04%" in t.error
    chunks = len(text.removeprefix("The CAGR is ")) // len("0.04% ")
    assert 400 // 6 <= chunks <= 400 // 6 + repetition.CHECK_EVERY  # stopped soon, not at 900
    (call,) = calls(dbs)
    assert call.outcome == "truncated"
    assert history.read_all(r, session_id=t.session_id)[1]["content"] == text


def test_a_long_reply_that_does_not_loop_runs_to_its_end(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session
) -> None:
    figures = [
        f"{year}: revenue {100 + 7 * year % 13}.{year % 10}M, margin {year % 9}%. "
        for year in range(1900, 2000)
    ]
    env.script(reply=figures)  # tabular text with a repeated shape but changing figures
    t = start(user_id, "A century of revenue")
    assert "".join(e for e in t if isinstance(e, str)) == "".join(figures)
    assert t.status == "complete" and calls(dbs)[0].outcome == "ok"


def test_cancel_from_another_thread_stops_and_saves_before_wait_returns(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    import threading

    env.script(chunks=500, delay=0.005)
    t = start(user_id, "Stream for a while")
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(t))  # the old Streamlit run
    reader.start()
    while len(got) < 3:
        time.sleep(0.005)
    assert t.stop(timeout=5)  # what the next run does (pages/chat.py)
    reply = history.read_all(r, session_id=t.session_id)[1]  # saved by the time wait returns
    reader.join(timeout=5)
    assert reply["status"] == "interrupted" and reply["content"] == "".join(got)
    assert 3 <= len(got) < 500
    assert [c.outcome for c in calls(dbs)] == ["cancelled"]


def test_stopping_a_finished_turn_returns_at_once(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session
) -> None:
    t = start(user_id, "Hello")
    text = "".join(t)
    assert t.stop(timeout=0) and t.status == "complete" and text
    assert [c.outcome for c in calls(dbs)] == ["ok"]


def test_closing_before_the_first_chunk_still_records_the_turn(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    t = start(user_id, "Hello")
    t.close()
    assert [m["role"] for m in history.read_all(r, session_id=t.session_id)] == [
        "user",
        "assistant",
    ]
    assert [c.outcome for c in calls(dbs)] == ["cancelled"]


def test_a_turn_dropped_unread_is_recorded_like_one_closed_at_once(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    t = start(user_id, "Hello")
    sid = t.session_id
    del t  # never iterated, never closed (a notebook cell run again)
    user_msg, reply = history.read_all(r, session_id=sid)
    assert user_msg["content"] == "Hello"
    assert reply["role"] == "assistant" and reply["status"] == "interrupted"
    assert [c.outcome for c in calls(dbs)] == ["cancelled"]
    assert session_row(dbs, sid).message_count == 2
    assert env.requests == []  # the model was never asked


def test_stopping_a_turn_never_started_ends_it_at_once(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session
) -> None:
    t = start(user_id, "Hello")
    assert t.stop(timeout=0)  # a page run cut short before its stream began
    assert t.status == "interrupted" and list(t) == []
    assert [c.outcome for c in calls(dbs)] == ["cancelled"] and env.requests == []


def test_usage_row_failure_keeps_the_reply_in_redis(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    real = database.get_sessionmaker()
    engine = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/ledger", connect_args={"connect_timeout": 2}
    )
    factories: Iterator[sessionmaker[Session]] = iter([real, sessionmaker(engine)])
    try:
        t = chat.turn(
            lambda: next(factories)(), r, llm.get_backend(), user_id=user_id, prompt="Hello"
        )
        assert "".join(t) == "Revenue is the top line."
    finally:
        engine.dispose()
    assert t.storage_error is not None and "usage record could not be written" in t.storage_error
    assert "the reply itself is saved" in t.storage_error
    assert history.read_all(r, session_id=t.session_id)[1]["content"] == "Revenue is the top line."
    assert calls(dbs) == []


# --- writes that failed when the turn ended are retried -------------------------------------


def test_a_reply_redis_refused_is_saved_by_save_again_once_redis_takes_writes(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, private_redis: redis.Redis
) -> None:
    r = private_redis  # maxmemory is the server's: on a shared one it hits other tests too
    t = start(user_id, "Hello")
    got = [next(t)]
    r.config_set("maxmemory", 1)  # the question is stored; from now on Redis refuses writes
    try:
        got += list(t)
        assert "refused to store it: it is out of memory" in (t.storage_error or "")
        assert "The reply was not saved." in (t.storage_error or "")
        assert t.pending and not t.save_again()  # still refused: nothing changes
        assert [m["role"] for m in history.read_all(r, session_id=t.session_id)] == ["user"]
        assert session_row(dbs, t.session_id).message_count == 1
    finally:
        r.config_set("maxmemory", 0)

    assert t.save_again()
    assert not t.pending and t.storage_error is None
    reply = history.read_all(r, session_id=t.session_id)[1]
    assert reply["role"] == "assistant" and reply["content"] == "".join(got)
    assert session_row(dbs, t.session_id).message_count == 2
    assert [c.outcome for c in calls(dbs)] == ["ok"]  # one usage row, written at the end
    assert t.save_again()  # nothing pending: nothing is written twice
    assert len(history.read_all(r, session_id=t.session_id)) == 2


def test_a_usage_row_postgresql_refused_is_written_by_save_again(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    real = database.get_sessionmaker()
    engine = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/ledger", connect_args={"connect_timeout": 2}
    )
    factories: Iterator[sessionmaker[Session]] = iter([real, sessionmaker(engine), real])
    try:
        t = chat.turn(
            lambda: next(factories)(), r, llm.get_backend(), user_id=user_id, prompt="Hello"
        )
        "".join(t)
    finally:
        engine.dispose()
    assert t.pending and calls(dbs) == []

    assert t.save_again()
    assert t.storage_error is None
    assert [c.outcome for c in calls(dbs)] == ["ok"]
    row = session_row(dbs, t.session_id)
    assert row.message_count == 2 and row.completion_tokens == t.stats.completion_tokens  # type: ignore[union-attr]


def test_a_finished_turn_with_everything_saved_has_nothing_pending(
    env: FakeOllama, user_id: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    t = start(user_id, "Hello")
    "".join(t)
    assert not t.pending and t.save_again()
    assert len(history.read_all(r, session_id=t.session_id)) == 2
    assert len(calls(dbs)) == 1
