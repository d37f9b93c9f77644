"""Per-user isolation in core: every function over sessions and usage is scoped by user_id,
and another user's data behaves exactly like data that does not exist."""

from __future__ import annotations

import inspect
import uuid

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import history, sessions, usage
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
    "date_range",
    "last_days",
}
# Operator maintenance over the whole table (CLI/notebook), never reachable from a page.
OPERATOR = {"rebuild_rollups"}


def make_user(dbs: Session, name: str) -> uuid.UUID:
    return new_user(dbs, name).id


def record(dbs: Session, user_id: uuid.UUID, session_id: uuid.UUID | None, tokens: int) -> None:
    usage.record_call(
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


@pytest.mark.parametrize("module", [sessions, usage], ids=lambda m: m.__name__)
def test_every_public_data_function_takes_user_id_keyword_only(module: object) -> None:
    unscoped = []
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if name.startswith("_") or name in PURE | OPERATOR or fn.__module__ != module.__name__:  # type: ignore[attr-defined]
            continue
        param = inspect.signature(fn).parameters.get("user_id")
        if param is None or param.kind is not inspect.Parameter.KEYWORD_ONLY:
            unscoped.append(name)
    assert unscoped == []


def test_session_functions_treat_anothers_session_as_missing(dbs: Session, r: redis.Redis) -> None:
    alice, bob = make_user(dbs, "alice"), make_user(dbs, "bob")
    row = sessions.create(dbs, user_id=alice, title="Q3 numbers")
    history.append(r, session_id=row.id, message=history.make_message("user", "secret"))
    calls = [
        lambda sid: sessions.get_for_owner(dbs, user_id=bob, session_id=sid),
        lambda sid: sessions.rename(dbs, user_id=bob, session_id=sid, title="mine now"),
        lambda sid: sessions.touch(dbs, user_id=bob, session_id=sid, messages_added=1),
        lambda sid: sessions.messages(dbs, r, user_id=bob, session_id=sid),
        lambda sid: sessions.delete(dbs, r, user_id=bob, session_id=sid),
    ]
    for call in calls:
        with pytest.raises(NotFound) as theirs:
            call(row.id)
        with pytest.raises(NotFound) as unknown:
            call(uuid.uuid4())
        assert str(theirs.value) == str(unknown.value)
    assert sessions.count_for_owner(dbs, user_id=bob) == 0
    mine = sessions.get_for_owner(dbs, user_id=alice, session_id=row.id)
    assert (mine.title, mine.message_count) == ("Q3 numbers", 0)
    assert history.count(r, session_id=row.id) == 1


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
    assert usage.tokens_used_today(dbs, user_id=alice) == 20
    assert usage.tokens_used_today(dbs, user_id=bob) == 2000
