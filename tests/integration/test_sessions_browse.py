"""Browsing, searching, exporting and bulk-deleting sessions on real PostgreSQL and Redis."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import clock, export, history, search, sessions
from core.errors import InvalidInput, NotFound
from core.models import ConversationSession
from tests.support.people import make_user as new_user

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def make_user(dbs: Session, name: str) -> uuid.UUID:
    return new_user(dbs, name).id


def make_session(
    dbs: Session,
    r: redis.Redis,
    user_id: uuid.UUID,
    title: str,
    contents: list[str],
    *,
    at: datetime = T0,
) -> uuid.UUID:
    clock.set_source(lambda: at)
    row = sessions.create(dbs, user_id=user_id, title=title, model="llama3.2:3b")
    for i, content in enumerate(contents):
        role = "user" if i % 2 == 0 else "assistant"
        stats = {"completion_tokens": 10 + i, "ttft_ms": 100.5} if role == "assistant" else None
        history.append(
            r, session_id=row.id, message=history.make_message(role, content, stats=stats)
        )
    sessions.touch(dbs, user_id=user_id, session_id=row.id, messages_added=len(contents), at=at)
    return row.id


@pytest.fixture
def people(dbs: Session) -> dict[str, uuid.UUID]:
    return {"alice": make_user(dbs, "alice"), "bob": make_user(dbs, "bob")}


# --- browse ----------------------------------------------------------------------------------


def test_browse_lists_newest_first_with_counts_and_pages(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID]
) -> None:
    alice = people["alice"]
    ids = [
        make_session(dbs, r, alice, f"s{i}", ["q", "a"], at=T0 + timedelta(hours=i))
        for i in range(5)
    ]
    first = sessions.browse(dbs, user_id=alice, limit=2)
    second = sessions.browse(dbs, user_id=alice, limit=2, offset=2)
    last = sessions.browse(dbs, user_id=alice, limit=2, offset=4)
    assert [s.id for s in first.items + second.items + last.items] == ids[::-1]
    assert (first.total, first.has_next, last.has_next) == (5, True, False)
    assert first.items[0].message_count == 2 and first.items[0].username == "alice"


def test_browse_all_users_is_an_explicit_none_and_filters_by_user(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID]
) -> None:
    make_session(dbs, r, people["alice"], "mine", ["x"])
    make_session(dbs, r, people["bob"], "his", ["y"], at=T0 + timedelta(minutes=1))
    everyone = sessions.browse(dbs, user_id=None)
    assert [(s.title, s.username) for s in everyone.items] == [("his", "bob"), ("mine", "alice")]
    assert [s.title for s in sessions.browse(dbs, user_id=people["bob"]).items] == ["his"]


def test_summary_of_someone_elses_session_is_not_found(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID]
) -> None:
    sid = make_session(dbs, r, people["alice"], "mine", ["x"])
    assert sessions.summary(dbs, user_id=people["alice"], session_id=sid).title == "mine"
    with pytest.raises(NotFound):
        sessions.summary(dbs, user_id=people["bob"], session_id=sid)


# --- search ----------------------------------------------------------------------------------


@pytest.fixture
def corpus(dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID]) -> dict[str, uuid.UUID]:
    alice, bob = people["alice"], people["bob"]
    return {
        "revenue": make_session(
            dbs,
            r,
            alice,
            "Q3 Revenue bridge",
            ["Build the bridge", "Volume +4%, price/mix +2%, FX −1%", "thanks"],
            at=T0,
        ),
        "dcf": make_session(
            dbs,
            r,
            alice,
            "DCF",
            ["TV = FCF × (1 + g) / (WACC − g)", "Use g below WACC; 100% of the value is TV"],
            at=T0 + timedelta(hours=1),
        ),
        "html": make_session(
            dbs,
            r,
            alice,
            "Notes",
            ["<script>alert(1)</script> EBITDA *bold*"],
            at=T0 + timedelta(hours=2),
        ),
        "bob": make_session(dbs, r, bob, "Bob's revenue", ["revenue secrets of bob"], at=T0),
    }


def test_search_finds_titles_and_contents_case_insensitively_newest_first(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID], corpus: dict[str, uuid.UUID]
) -> None:
    result = search.find(dbs, r, user_id=people["alice"], query="REVENUE")
    assert [h.session.id for h in result.hits] == [corpus["revenue"]]
    (hit,) = result.hits
    assert hit.title_spans == ((3, 10),) and hit.matched_messages == 0
    content = search.find(dbs, r, user_id=people["alice"], query="fx")
    (hit,) = content.hits
    assert hit.matched_messages == 1
    (found,) = hit.messages
    assert (found.index, found.role) == (1, "assistant")
    assert [found.snippet.text[a:b] for a, b in found.snippet.spans] == ["FX"]
    assert content.sessions_searched == 3 and content.messages_searched == 6


def test_search_never_returns_another_users_sessions(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID], corpus: dict[str, uuid.UUID]
) -> None:
    mine = search.find(dbs, r, user_id=people["alice"], query="secrets")
    assert mine.hits == [] and mine.total_hits == 0
    everyone = search.find(dbs, r, user_id=None, query="revenue")
    assert {h.session.username for h in everyone.hits} == {"alice", "bob"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("(1 + g)", {"dcf"}),
        ("100%", {"dcf"}),
        ("%", {"dcf", "revenue"}),
        ("_", set()),
        (".*", set()),
        ("[a-z]+", set()),
        ("'; DROP TABLE conversation_sessions; --", set()),
        ("\\", set()),
        ('"', set()),
        ("*bold*", {"html"}),
        ("<script>", {"html"}),
        ("−1%", {"revenue"}),
    ],
)
def test_regex_and_sql_metacharacters_are_literal(
    dbs: Session,
    r: redis.Redis,
    people: dict[str, uuid.UUID],
    corpus: dict[str, uuid.UUID],
    query: str,
    expected: set[str],
) -> None:
    result = search.find(dbs, r, user_id=people["alice"], query=query)
    names = {k for k, v in corpus.items() if v in {h.session.id for h in result.hits}}
    assert names == expected
    assert dbs.scalar(select(func.count()).select_from(ConversationSession)) == 4


def test_a_ten_kilobyte_search_is_refused_with_a_clear_message(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID]
) -> None:
    with pytest.raises(InvalidInput, match=r"too long \(10,240 characters\); use at most 1,000"):
        search.find(dbs, r, user_id=people["alice"], query="x" * 10_240)


def test_an_empty_search_is_refused(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID]
) -> None:
    with pytest.raises(InvalidInput, match="Type a word"):
        search.find(dbs, r, user_id=people["alice"], query="   ")


def test_a_long_query_at_the_limit_runs_and_finds_nothing(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID], corpus: dict[str, uuid.UUID]
) -> None:
    result = search.find(dbs, r, user_id=people["alice"], query="ab" * 500)
    assert result.total_hits == 0 and "0 sessions match" in result.message


def test_search_snippets_highlight_safely(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID], corpus: dict[str, uuid.UUID]
) -> None:
    (hit,) = search.find(dbs, r, user_id=people["alice"], query="ebitda").hits
    md = hit.messages[0].snippet.markdown(open_mark="==", close_mark="==")
    assert md == "\\<script\\>alert\\(1\\)\\<\\/script\\> ==EBITDA== \\*bold\\*"


def test_a_damaged_history_entry_is_skipped(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID], corpus: dict[str, uuid.UUID]
) -> None:
    r.rpush(history.key(corpus["dcf"]), "{not json WACC")
    result = search.find(dbs, r, user_id=people["alice"], query="wacc")
    (hit,) = result.hits
    assert hit.matched_messages == 2


def test_search_limit_counts_every_hit(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID]
) -> None:
    for i in range(7):
        make_session(dbs, r, people["alice"], f"s{i}", ["margin talk"], at=T0 + timedelta(hours=i))
    result = search.find(dbs, r, user_id=people["alice"], query="margin", limit=3)
    assert (len(result.hits), result.total_hits) == (3, 7)
    assert "7 sessions match (showing 3)" in result.message


def test_title_only_search_reads_no_history(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID], corpus: dict[str, uuid.UUID]
) -> None:
    result = search.find(dbs, r, user_id=people["alice"], query="fx", content=False)
    assert result.hits == [] and result.messages_searched == 0


# --- conversation and export -------------------------------------------------------------


def test_conversation_frame_has_a_row_per_message_with_stats_columns(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID], corpus: dict[str, uuid.UUID]
) -> None:
    frame = export.conversation_frame(dbs, r, user_id=people["alice"], session_id=corpus["revenue"])
    assert list(frame["role"]) == ["user", "assistant", "user"]
    assert list(frame["status"]) == ["complete"] * 3
    assert frame.loc[1, "stats.completion_tokens"] == 11
    assert str(frame["timestamp"].dtype).startswith("datetime64")
    assert list(frame["chars"]) == [16, 33, 6]


def test_json_export_holds_every_message_with_time_role_status_and_stats(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID]
) -> None:
    alice = people["alice"]
    clock.set_source(lambda: T0)
    row = sessions.create(dbs, user_id=alice, title="../../etc/passwd «Q3»")
    history.append(r, session_id=row.id, message=history.make_message("user", "hi"))
    history.append(
        r,
        session_id=row.id,
        message=history.make_message(
            "assistant", "part", stats={"ttft_ms": 5}, status="interrupted"
        ),
    )
    history.append(
        r,
        session_id=row.id,
        message=history.make_message("assistant", "", status="error", error="down"),
    )
    exported = export.to_json(dbs, r, user_id=alice, session_id=row.id)
    body = json.loads(exported.data)
    assert exported.filename == f"ledger-etc-passwd-q3-{row.id.hex[:8]}.json"
    assert exported.mime == "application/json"
    assert body["session"]["title"] == "../../etc/passwd «Q3»"
    assert [(m["role"], m["status"]) for m in body["messages"]] == [
        ("user", "complete"),
        ("assistant", "interrupted"),
        ("assistant", "error"),
    ]
    assert body["messages"][1]["stats"] == {"ttft_ms": 5}
    assert body["messages"][2]["error"] == "down"
    assert all(m["timestamp"] == T0.isoformat() for m in body["messages"])


def test_markdown_export_reads_as_a_document(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID], corpus: dict[str, uuid.UUID]
) -> None:
    exported = export.to_markdown(dbs, r, user_id=people["alice"], session_id=corpus["revenue"])
    doc = exported.data.decode()
    assert exported.filename.endswith(".md") and exported.mime == "text/markdown"
    assert doc.startswith("# Q3 Revenue bridge\n")
    assert "### 2 · Assistant · 2026-03-01 09:00:00 UTC" in doc
    assert "Volume +4%, price/mix +2%, FX −1%" in doc
    assert "> `completion_tokens: 11 · ttft_ms: 100.5`" in doc
    assert "- Model: `llama3.2:3b`" in doc
    assert "- Messages: 3" in doc


def test_markdown_export_escapes_only_what_markdown_needs(dbs: Session, r: redis.Redis) -> None:
    owner = new_user(dbs, "ana.analyst")
    row = sessions.create(dbs, user_id=owner.id, title="<b>test</b> of Q3: *bridge* v1.2")
    dbs.commit()
    failed = history.make_message("assistant", "", status="error", error="model_x [down]")
    history.append(r, session_id=row.id, message=failed)
    doc = export.to_markdown(dbs, r, user_id=owner.id, session_id=row.id).data.decode()
    assert doc.startswith("# \\<b>test\\</b> of Q3: \\*bridge\\* v1.2\n")  # no tag, no emphasis
    assert "- Owner: ana.analyst\n" in doc  # a dot needs no backslash
    assert "> Error: model\\_x \\[down\\]" in doc


def test_export_of_a_ten_thousand_message_session(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID]
) -> None:
    alice = people["alice"]
    row = sessions.create(dbs, user_id=alice, title="long")
    pipe = r.pipeline(transaction=False)
    for i in range(10_000):
        pipe.rpush(history.key(row.id), json.dumps({"role": "user", "content": f"m{i}", "ts": "t"}))
    pipe.execute()
    body = json.loads(export.to_json(dbs, r, user_id=alice, session_id=row.id).data)
    assert len(body["messages"]) == 10_000 and body["messages"][-1]["content"] == "m9999"
    doc = export.to_markdown(dbs, r, user_id=alice, session_id=row.id).data.decode()
    assert "### 10000 · User" in doc and "- Messages: 10,000" in doc


def test_a_deleted_session_opened_from_an_old_link_is_not_found(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID], corpus: dict[str, uuid.UUID]
) -> None:
    alice, sid = people["alice"], corpus["dcf"]
    sessions.delete(dbs, r, user_id=alice, session_id=sid)
    dbs.commit()
    link = str(sid)  # what ?session=<uuid> carries
    for call in (
        lambda: sessions.get_for_owner(dbs, user_id=alice, session_id=link),
        lambda: sessions.messages(dbs, r, user_id=alice, session_id=link),
        lambda: export.to_json(dbs, r, user_id=alice, session_id=link),
        lambda: export.to_markdown(dbs, r, user_id=alice, session_id=link),
        lambda: export.conversation_frame(dbs, r, user_id=alice, session_id=link),
    ):
        with pytest.raises(NotFound, match="Session not found"):
            call()


def test_exports_of_another_users_session_are_not_found(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID], corpus: dict[str, uuid.UUID]
) -> None:
    with pytest.raises(NotFound):
        export.to_json(dbs, r, user_id=people["alice"], session_id=corpus["bob"])


# --- delete older than -----------------------------------------------------------------------


def test_delete_older_than_removes_only_the_owners_old_sessions_and_histories(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID]
) -> None:
    alice, bob = people["alice"], people["bob"]
    old = make_session(dbs, r, alice, "old", ["a"], at=T0 - timedelta(days=40))
    recent = make_session(dbs, r, alice, "recent", ["b"], at=T0 - timedelta(days=5))
    bobs_old = make_session(dbs, r, bob, "bob old", ["c"], at=T0 - timedelta(days=90))
    dbs.commit()
    clock.set_source(lambda: T0)
    assert sessions.count_older_than(dbs, user_id=alice, days=30) == 1
    assert sessions.delete_older_than(dbs, r, user_id=alice, days=30) == 1
    dbs.commit()
    assert [s.id for s in sessions.browse(dbs, user_id=alice).items] == [recent]
    assert history.count(r, session_id=old) == 0
    assert history.count(r, session_id=recent) == 1
    assert history.count(r, session_id=bobs_old) == 1
    assert sessions.get_for_owner(dbs, user_id=bob, session_id=bobs_old)


@pytest.mark.parametrize("days", [0, -3, 10**9, 2.5, True])
def test_delete_older_than_refuses_a_bad_number_of_days(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID], days: object
) -> None:
    with pytest.raises(InvalidInput):
        sessions.delete_older_than(dbs, r, user_id=people["alice"], days=days)  # type: ignore[arg-type]


def test_search_over_very_many_sessions_says_it_searched_the_newest_only(
    dbs: Session, r: redis.Redis, people: dict[str, uuid.UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "MAX_SEARCH_SESSIONS", 2)
    for i in range(3):
        make_session(dbs, r, people["alice"], f"plan {i}", ["x"], at=T0 + timedelta(hours=i))
    result = search.find(dbs, r, user_id=None, query="plan")
    assert result.limited and result.sessions_searched == 2
    assert [h.session.title for h in result.hits] == ["plan 2", "plan 1"]
    assert "in the 2 most recent sessions" in result.message
