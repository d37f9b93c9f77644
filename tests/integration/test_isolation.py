"""Per-user isolation in core: every function over sessions and usage is scoped by user_id,
and another user's data behaves exactly like data that does not exist.

``core.history`` is the storage layer, addressed by session id alone (its docstring says so);
what pages and notebooks call is ``core.sessions`` and ``core.access``, checked here."""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import access, clock, export, history, quota, search, sessions, text, usage, usage_log
from core.accounts import Identity
from core.errors import NotFound
from core.models import LlmCall
from tests.support.people import make_user as new_user

# No data access: validators and formatters.
PURE = {
    "clean_title",
    "parse_id",
    "clean_query",
    "describe",
    "match_notes",
    "export_filename",
    "delete_warning",
    "date_range",
    "last_days",
    "title_from_prompt",
    "summary_select",
    "scoped",
    "headline",  # formats a frame the caller already has
}
# Operator maintenance over the whole table (CLI/notebook), never reachable from a page.
OPERATOR = {"rebuild_rollups"}


def make_user(dbs: Session, name: str) -> uuid.UUID:
    return new_user(dbs, name).id


def record(dbs: Session, user_id: uuid.UUID, session_id: uuid.UUID | None, tokens: int) -> None:
    usage_log.record_call(
        dbs,
        user_id=user_id,
        session_id=session_id,
        model="m",
        backend="ollama",
        prompt_tokens=tokens,
        completion_tokens=tokens,
        ttft_ms=1.0,
        duration_ms=2.0,
        outcome="ok",
    )


@pytest.mark.parametrize(
    "module", [sessions, search, export, usage, usage_log, quota], ids=lambda m: m.__name__
)
def test_every_public_data_function_takes_user_id_keyword_only(module: object) -> None:
    unscoped = []
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if name.startswith("_") or name in PURE | OPERATOR or fn.__module__ != module.__name__:  # type: ignore[attr-defined]
            continue
        param = inspect.signature(fn).parameters.get("user_id")
        if param is None or param.kind is not inspect.Parameter.KEYWORD_ONLY:
            unscoped.append(name)
    assert unscoped == []


# Every public function of core.sessions and core.export that takes a session id, called as
# ``uid`` on ``sid``.
BY_ID: dict[str, Callable[[Session, redis.Redis, uuid.UUID, uuid.UUID], object]] = {
    "get_for_owner": lambda d, r, uid, sid: sessions.get_for_owner(d, user_id=uid, session_id=sid),
    "summary": lambda d, r, uid, sid: sessions.summary(d, user_id=uid, session_id=sid),
    "rename": lambda d, r, uid, sid: sessions.rename(d, user_id=uid, session_id=sid, title="x"),
    "touch": lambda d, r, uid, sid: sessions.touch(
        d, user_id=uid, session_id=sid, messages_added=1
    ),
    "messages": lambda d, r, uid, sid: sessions.messages(d, r, user_id=uid, session_id=sid),
    "conversation_frame": lambda d, r, uid, sid: export.conversation_frame(
        d, r, user_id=uid, session_id=sid
    ),
    "to_json": lambda d, r, uid, sid: export.to_json(d, r, user_id=uid, session_id=sid),
    "to_markdown": lambda d, r, uid, sid: export.to_markdown(d, r, user_id=uid, session_id=sid),
    "to_file": lambda d, r, uid, sid: export.to_file(d, r, user_id=uid, session_id=sid, ext="md"),
    "delete": lambda d, r, uid, sid: sessions.delete(d, r, user_id=uid, session_id=sid),
}


def test_every_session_id_function_is_checked_below() -> None:
    takes_an_id = {
        name
        for module in (sessions, export)
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if not name.startswith("_")
        and fn.__module__ == module.__name__
        and "session_id" in inspect.signature(fn).parameters
    }
    assert takes_an_id == set(BY_ID)


@pytest.mark.parametrize("name", sorted(BY_ID))
def test_another_users_session_is_missing_to_every_function_by_id(
    dbs: Session, r: redis.Redis, name: str
) -> None:
    alice, bob = make_user(dbs, "alice"), make_user(dbs, "bob")
    row = sessions.create(dbs, user_id=alice, title="Q3 numbers")
    history.append(r, session_id=row.id, message=history.make_message("user", "secret"))
    call = BY_ID[name]
    with pytest.raises(NotFound) as theirs:
        call(dbs, r, bob, row.id)
    with pytest.raises(NotFound) as unknown:
        call(dbs, r, bob, uuid.uuid4())
    assert str(theirs.value) == str(unknown.value) == "Session not found."
    assert sessions.count_for_owner(dbs, user_id=bob) == 0
    mine = sessions.get_for_owner(dbs, user_id=alice, session_id=row.id)
    assert (mine.title, mine.message_count) == ("Q3 numbers", 0)
    assert [m["content"] for m in history.read_all(r, session_id=row.id)] == ["secret"]
    call(dbs, r, alice, row.id)  # the owner is served (the refusal above is not a broken call)


def test_searching_never_reads_another_users_history(dbs: Session, r: redis.Redis) -> None:
    alice, bob = make_user(dbs, "alice"), make_user(dbs, "bob")
    theirs = sessions.create(dbs, user_id=alice, title="Q3 numbers")
    history.append(r, session_id=theirs.id, message=history.make_message("user", "secret plan"))
    mine = sessions.create(dbs, user_id=bob, title="Bob's notes")
    history.append(r, session_id=mine.id, message=history.make_message("user", "no plan yet"))
    for query in ("secret", "Q3", "plan"):
        found = search.find(dbs, r, user_id=bob, query=query)
        assert [h.session.id for h in found.hits] == ([mine.id] if query == "plan" else [])
        assert (found.sessions_searched, found.messages_searched) == (1, 1)
    assert [h.session.id for h in search.find(dbs, r, user_id=alice, query="secret").hits] == [
        theirs.id
    ]


def test_bulk_deletes_count_and_remove_only_the_owners_sessions(
    dbs: Session, r: redis.Redis
) -> None:
    alice, bob = make_user(dbs, "alice"), make_user(dbs, "bob")
    clock.set_source(lambda: datetime(2026, 1, 1, tzinfo=UTC))
    old = sessions.create(dbs, user_id=alice, title="old")
    history.append(r, session_id=old.id, message=history.make_message("user", "keep"))
    clock.set_source(None)
    assert sessions.count_older_than(dbs, user_id=bob, days=30) == 0
    assert sessions.delete_older_than(dbs, r, user_id=bob, days=30) == 0
    assert history.count(r, session_id=old.id) == 1
    assert sessions.count_older_than(dbs, user_id=alice, days=30) == 1


# --- core.access: who may open or manage a session by id --------------------------------------


def test_an_analyst_can_neither_open_nor_manage_anothers_session(
    dbs: Session, r: redis.Redis
) -> None:
    alice, bob = new_user(dbs, "alice"), Identity.of(new_user(dbs, "bob"))
    row = sessions.create(dbs, user_id=alice.id, title="Q3 numbers")
    history.append(r, session_id=row.id, message=history.make_message("user", "secret"))
    for call in (
        lambda sid: access.session_owner(dbs, actor=bob, session_id=sid),
        lambda sid: access.open_session(dbs, r, viewer=bob, session_id=sid),
        lambda sid: access.rename(dbs, actor=bob, session_id=sid, title="mine now"),
        lambda sid: access.export(dbs, r, actor=bob, session_id=sid, ext="json"),
        lambda sid: access.delete(dbs, r, actor=bob, session_id=sid),
    ):
        with pytest.raises(NotFound) as theirs:
            call(row.id)
        with pytest.raises(NotFound) as unknown:
            call(uuid.uuid4())
        assert str(theirs.value) == str(unknown.value) == "Session not found."
    assert sessions.get_for_owner(dbs, user_id=alice.id, session_id=row.id).title == "Q3 numbers"
    assert history.count(r, session_id=row.id) == 1


def test_the_owner_opens_their_session_to_go_on_with_it(dbs: Session, r: redis.Redis) -> None:
    alice = Identity.of(new_user(dbs, "alice"))
    row = sessions.create(dbs, user_id=alice.id, title="Q3 numbers")
    history.append(r, session_id=row.id, message=history.make_message("user", "mine"))
    opened = access.open_session(dbs, r, viewer=alice, session_id=str(row.id))
    assert (opened.read_only, opened.notice) == (False, None)
    assert [m["content"] for m in opened.messages] == ["mine"]
    assert access.session_owner(dbs, actor=alice, session_id=row.id) == alice.id


def test_an_admin_reads_anothers_session_read_only(dbs: Session, r: redis.Redis) -> None:
    alice = new_user(dbs, "alice", display_name="Alice Martin")
    root = Identity.of(new_user(dbs, "root", "admin"))
    row = sessions.create(dbs, user_id=alice.id, title="Q3 numbers")
    history.append(r, session_id=row.id, message=history.make_message("user", "secret"))
    opened = access.open_session(dbs, r, viewer=root, session_id=row.id)
    assert opened.read_only
    assert opened.notice == text.escape_markdown("Alice Martin's conversation, read-only")
    assert (opened.session.id, opened.session.username) == (row.id, "alice")
    assert [m["content"] for m in opened.messages] == ["secret"]
    assert access.session_owner(dbs, actor=root, session_id=row.id) == alice.id
    with pytest.raises(NotFound):
        access.open_session(dbs, r, viewer=root, session_id=uuid.uuid4())


def test_an_admin_moderates_exactly_the_session_named(dbs: Session, r: redis.Redis) -> None:
    alice, bob = new_user(dbs, "alice"), new_user(dbs, "bob")
    root = Identity.of(new_user(dbs, "root", "admin"))
    theirs = sessions.create(dbs, user_id=alice.id, title="Q3 numbers")
    other = sessions.create(dbs, user_id=bob.id, title="Bob's")
    for row in (theirs, other):
        history.append(r, session_id=row.id, message=history.make_message("user", row.title))
    access.rename(dbs, actor=root, session_id=theirs.id, title="Moderated")
    exported = json.loads(access.export(dbs, r, actor=root, session_id=theirs.id, ext="json").data)
    assert (exported["session"]["owner"], exported["session"]["title"]) == ("alice", "Moderated")
    access.delete(dbs, r, actor=root, session_id=theirs.id)
    assert sessions.count_for_owner(dbs, user_id=alice.id) == 0
    assert history.count(r, session_id=theirs.id) == 0
    assert sessions.get_for_owner(dbs, user_id=bob.id, session_id=other.id).title == "Bob's"
    assert history.count(r, session_id=other.id) == 1


def test_usage_cannot_be_booked_on_anothers_session(dbs: Session) -> None:
    alice, bob = make_user(dbs, "alice"), make_user(dbs, "bob")
    row = sessions.create(dbs, user_id=alice)
    with pytest.raises(NotFound):
        record(dbs, bob, row.id, 10)
    assert dbs.scalars(select(LlmCall)).all() == []


def test_usage_of_a_session_deleted_meanwhile_is_kept_without_it(
    dbs: Session, r: redis.Redis
) -> None:
    alice = make_user(dbs, "alice")
    row = sessions.create(dbs, user_id=alice)
    sessions.delete(dbs, r, user_id=alice, session_id=row.id)
    record(dbs, alice, row.id, 10)
    (call,) = dbs.scalars(select(LlmCall)).all()
    assert (call.user_id, call.session_id, call.prompt_tokens) == (alice, None, 10)


def test_todays_tokens_count_only_the_users_own_calls(dbs: Session) -> None:
    alice, bob = make_user(dbs, "alice"), make_user(dbs, "bob")
    record(dbs, alice, sessions.create(dbs, user_id=alice).id, 10)
    record(dbs, bob, None, 1000)
    assert quota.tokens_used_today(dbs, user_id=alice) == 20
    assert quota.tokens_used_today(dbs, user_id=bob) == 2000
