"""Chat turns in which the model calls tools: a server speaking Ollama's protocol scripts the
tool calls (``tool_calls`` in the streamed chunks, as Ollama sends them), and the answers come
from code over real PostgreSQL and Redis."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import chat, data, database, export, history, llm, turn
from core.config import get_settings
from core.models import LlmCall
from core.tools import ToolCard
from tests.support.fake_ollama import FakeOllama
from tests.support.people import make_user

SAMPLE = Path(__file__).resolve().parents[2] / "notebooks" / "samples" / "revenue.csv"
BY_YEAR = "SELECT year, sum(revenue) AS revenue FROM revenue GROUP BY year ORDER BY year"


@pytest.fixture
def ana(dbs: Session, r: redis.Redis, ollama_env: FakeOllama) -> uuid.UUID:
    user = make_user(dbs, "ana", commit=True)
    return user.id


@pytest.fixture
def revenue(dbs: Session, ana: uuid.UUID) -> data.TableInfo:
    stored = data.upload(dbs, user_id=ana, filename="revenue.csv", data=SAMPLE.read_bytes())
    dbs.commit()
    return stored.table


def ask(user_id: uuid.UUID, prompt: str, **kw: object) -> tuple[turn.Turn, list[object]]:
    current = chat.turn(
        database.get_sessionmaker(),
        redis.Redis(connection_pool=history_pool()),
        llm.get_backend(),
        user_id=user_id,
        prompt=prompt,
        **kw,  # type: ignore[arg-type]
    )
    events = list(current)
    return current, events


def history_pool() -> redis.ConnectionPool:
    from core import services

    return services.redis_client().connection_pool


def test_a_query_over_an_attached_table_answers_from_code(
    ollama_env: FakeOllama, ana: uuid.UUID, revenue: data.TableInfo, dbs: Session
) -> None:
    ollama_env.script(
        tool_calls=[{"name": "run_sql", "arguments": {"query": BY_YEAR}}],
        reply="Revenue grew from 200 in 2019 to 315 in 2024.",
    )
    current, events = ask(ana, "How did revenue grow?", tables=[revenue.id])
    cards = [e for e in events if isinstance(e, ToolCard)]
    text = "".join(e for e in events if isinstance(e, str))
    assert text == "Revenue grew from 200 in 2019 to 315 in 2024."
    (card,) = cards
    assert card.ok and card.columns == ["year", "revenue"]
    assert card.rows == [
        [2019, 200],
        [2020, 216],
        [2021, 197],
        [2022, 241],
        [2023, 273],
        [2024, 315],
    ]
    assert card.chart == {"kind": "line", "x": "year", "y": ["revenue"]}
    first, second = ollama_env.requests[-2:]
    assert {t["function"]["name"] for t in first["tools"]} >= {"run_sql", "cagr"}
    assert "Table revenue (12 rows; from revenue.csv)" in first["messages"][0]["content"]
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and json.loads(tool_message["content"])["rows"][0] == [
        2019,
        200,
    ]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "run_sql"

    saved = history.read_all(history_pool_client(), session_id=current.session_id)[-1]
    assert saved["tools"][0]["rows"][-1] == [2024, 315] and saved["content"] == text
    dbs.expire_all()
    call = dbs.scalars(select(LlmCall)).one()
    assert (call.tool_calls, call.outcome) == (1, "ok")
    assert current.stats is not None and current.stats.prompt_tokens > 0
    assert [t.name for t in data.attached(dbs, user_id=ana, session_id=current.session_id)] == [
        "revenue"
    ]
    md = export.to_markdown(dbs, history_pool_client(), user_id=ana, session_id=current.session_id)
    assert (
        "> **Tool: SQL over revenue**" in md.data.decode() and "| 2024 | 315 |" in md.data.decode()
    )
    js = json.loads(
        export.to_json(dbs, history_pool_client(), user_id=ana, session_id=current.session_id).data
    )
    assert js["messages"][-1]["tools"][0]["detail"].startswith("SELECT year")


def history_pool_client() -> redis.Redis:
    from core import services

    return services.redis_client()


def test_a_finance_function_answers_without_any_table(
    ollama_env: FakeOllama, ana: uuid.UUID
) -> None:
    ollama_env.script(
        tool_calls=[{"name": "cagr", "arguments": {"start": 120, "end": 210, "years": 5}}],
        reply="About 11.8 % a year.",
    )
    _, events = ask(ana, "CAGR from $120M in 2019 to $210M in 2024?")
    (card,) = [e for e in events if isinstance(e, ToolCard)]
    assert card.ok and card.value == pytest.approx(0.118427, abs=1e-6)
    names = {t["function"]["name"] for t in ollama_env.requests[-2]["tools"]}
    assert "run_sql" not in names and "cagr" in names


@pytest.mark.parametrize(
    ("call", "refusal"),
    [
        ({"name": "format_disk", "arguments": {}}, "There is no tool named 'format_disk'"),
        ({"name": "cagr", "arguments": {"start": "lots"}}, "cagr: missing arguments"),
        ({"name": "run_sql", "arguments": {"query": "DROP TABLE revenue"}}, "this is DROP"),
        (
            {"name": "run_sql", "arguments": {"query": "SELECT * FROM read_csv('/etc/passwd')"}},
            "no table functions or files",
        ),
    ],
    ids=["unknown tool", "bad arguments", "drop", "read a file"],
)
def test_a_bad_tool_call_is_refused_shown_and_told_to_the_model(
    ollama_env: FakeOllama,
    ana: uuid.UUID,
    revenue: data.TableInfo,
    dbs: Session,
    call: dict[str, object],
    refusal: str,
) -> None:
    ollama_env.script(tool_calls=[call], reply="I could not run that.")
    current, events = ask(ana, "Do it.", tables=[revenue.id])
    (card,) = [e for e in events if isinstance(e, ToolCard)]
    assert not card.ok and refusal in (card.error or "")
    assert ollama_env.requests[-1]["messages"][-1]["content"].startswith("Error: ")
    assert current.status == "complete" and current.text == "I could not run that."
    assert data.get(dbs, user_id=ana, table="revenue").row_count == 12  # untouched


def test_a_model_looping_on_tool_calls_is_stopped_at_the_cap(
    ollama_env: FakeOllama, ana: uuid.UUID, dbs: Session
) -> None:
    cap = get_settings().tool_calls_per_turn
    ollama_env.script(
        tool_calls=[{"name": "margin", "arguments": {"part": 1, "revenue": 4}}],
        tool_rounds=99,
        reply="Enough.",
    )
    current, events = ask(ana, "Again and again.")
    cards = [e for e in events if isinstance(e, ToolCard)]
    assert len(cards) == cap and all(c.ok for c in cards)
    assert "tools" not in ollama_env.requests[-1] or not ollama_env.requests[-1]["tools"]
    assert current.text == "Enough."
    dbs.expire_all()
    assert dbs.scalars(select(LlmCall.tool_calls)).one() == cap


def test_a_model_without_tool_calling_gets_no_tools_and_is_told_so(
    ollama_env: FakeOllama, ana: uuid.UUID, revenue: data.TableInfo
) -> None:
    ollama_env.capabilities = ("completion",)
    llm.reset()
    ollama_env.script(reply="From the rows shown, 2019 was 200.")
    current, events = ask(ana, "Revenue?", tables=[revenue.id])
    assert all(isinstance(e, str) for e in events)
    request = ollama_env.requests[-1]
    assert not request.get("tools")
    assert "You cannot query them here" in request["messages"][0]["content"]
    assert not chat.can_call_tools(llm.get_backend(), current.model)


def test_tools_can_be_turned_off_for_a_chat(ollama_env: FakeOllama, ana: uuid.UUID) -> None:
    ollama_env.script(reply="Plain.")
    ask(ana, "Hello", use_tools=False)
    assert not ollama_env.requests[-1].get("tools")


def test_a_session_keeps_its_tables_for_the_next_prompt(
    ollama_env: FakeOllama, ana: uuid.UUID, revenue: data.TableInfo
) -> None:
    ollama_env.script(reply="Noted.")
    first, _ = ask(ana, "Look at revenue.", tables=[revenue.id])
    ask(ana, "And now?", session_id=first.session_id)  # tables=None: the session's own
    assert "Table revenue" in ollama_env.requests[-1]["messages"][0]["content"]
    ask(ana, "Forget it.", session_id=first.session_id, tables=[])
    assert "Table revenue" not in ollama_env.requests[-1]["messages"][0]["content"]
