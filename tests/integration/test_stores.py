"""Accounts, sessions, history and usage on real PostgreSQL and Redis."""

from __future__ import annotations

import itertools
import uuid

import pytest
import redis
from hypothesis import HealthCheck, assume, given, settings
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import accounts, history, login, passwords, services, sessions, usage_log
from core.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound
from core.models import ConversationSession, LlmCall
from tests.support.people import PASSWORD
from tests.support.people import make_user as new_user
from tests.support.strategies import any_text, ten_kilobytes
from tests.support.unicode import as_stored


def make_user(dbs: Session, name: str = "alice") -> uuid.UUID:
    return new_user(dbs, name).id


def test_username_is_unique_ignoring_case(dbs: Session) -> None:
    make_user(dbs, "Alice")
    with pytest.raises(Conflict):
        accounts.create_user(
            dbs, username="aLICE", email="other@example.com", display_name="A", password=PASSWORD
        )
    assert accounts.get_by_username(dbs, username="ALICE") is not None


@pytest.mark.parametrize(
    "twin",
    ["BOB@EXAMPLE.COM", "ｂｏｂ@ｅｘａｍｐｌｅ.ｃｏｍ", " bob@example.com "],
    ids=["upper case", "full-width", "spaces"],
)
def test_a_look_alike_of_an_email_is_the_same_account(dbs: Session, twin: str) -> None:
    accounts.create_user(
        dbs, username="bob", email="Bob@Example.com", display_name="Bob", password=PASSWORD
    )
    with pytest.raises(Conflict):
        accounts.create_user(
            dbs, username="bob2", email=twin, display_name="Bob", password=PASSWORD
        )
    user = accounts.get_by_email(dbs, email=twin)
    assert user is not None and user.email == "bob@example.com"


def test_an_email_with_a_letter_from_another_alphabet_is_refused(dbs: Session) -> None:
    accounts.create_user(
        dbs, username="bob", email="bob@example.com", display_name="Bob", password=PASSWORD
    )
    with pytest.raises(InvalidInput, match="mixes alphabets"):
        accounts.create_user(
            dbs, username="b0b", email="b\u043eb@example.com", display_name="Bob", password=PASSWORD
        )


def test_failed_duplicate_leaves_the_transaction_usable(dbs: Session) -> None:
    make_user(dbs, "bob")
    with pytest.raises(Conflict):
        make_user(dbs, "bob")
    make_user(dbs, "carol")
    dbs.commit()
    assert accounts.get_by_username(dbs, username="carol") is not None


@pytest.mark.parametrize(
    "display_name",
    ["Zoë «Ω» 李", "Robert'); DROP TABLE users;--", "<script>alert(1)</script>", "x" * 100],
)
def test_display_names_are_stored_exactly(dbs: Session, display_name: str) -> None:
    user = accounts.create_user(
        dbs, username="user1", email="u1@example.com", display_name=display_name, password=PASSWORD
    )
    dbs.commit()
    dbs.expire_all()
    assert accounts.get_by_id(dbs, user_id=user.id).display_name == display_name  # type: ignore[union-attr]


def test_ten_kilobyte_username_is_refused_with_a_message(dbs: Session) -> None:
    with pytest.raises(InvalidInput, match="3 to 32"):
        make_user(dbs, "a" * 10_000)


def test_password_is_stored_hashed_and_verifies(dbs: Session) -> None:
    user = accounts.get_by_id(dbs, user_id=make_user(dbs))
    assert user is not None and PASSWORD not in user.password_hash
    assert passwords.verify_password(PASSWORD, user.password_hash)
    assert not passwords.verify_password(PASSWORD + "!", user.password_hash)


@pytest.mark.parametrize(
    "title", ["Q3 «EBITDA» — 李", "'; DELETE FROM conversation_sessions; --", "<b>bold</b>"]
)
def test_titles_round_trip(dbs: Session, title: str) -> None:
    uid = make_user(dbs)
    row = sessions.create(dbs, user_id=uid, title=title)
    dbs.commit()
    dbs.expire_all()
    assert sessions.get_for_owner(dbs, user_id=uid, session_id=row.id).title == title


def test_ten_kilobyte_title_is_refused_on_rename(dbs: Session) -> None:
    uid = make_user(dbs)
    row = sessions.create(dbs, user_id=uid)
    with pytest.raises(InvalidInput, match="at most 200"):
        sessions.rename(dbs, user_id=uid, session_id=row.id, title="t" * 10_000)


def test_another_users_session_is_not_found(dbs: Session) -> None:
    alice, bob = make_user(dbs, "alice"), make_user(dbs, "bob")
    row = sessions.create(dbs, user_id=alice, title="mine")
    with pytest.raises(NotFound):
        sessions.get_for_owner(dbs, user_id=bob, session_id=row.id)
    with pytest.raises(NotFound):
        sessions.rename(dbs, user_id=bob, session_id=row.id, title="stolen")
    assert sessions.list_for_owner(dbs, user_id=bob) == []


@pytest.mark.parametrize("bad", ["", "not-a-uuid", "../../etc/passwd", "1 OR 1=1"])
def test_malformed_session_ids_are_not_found(dbs: Session, bad: str) -> None:
    with pytest.raises(NotFound):
        sessions.get_for_owner(dbs, user_id=uuid.uuid4(), session_id=bad)


def test_list_is_newest_first_and_pages(dbs: Session) -> None:
    uid = make_user(dbs)
    made = [sessions.create(dbs, user_id=uid, title=f"s{i}") for i in range(5)]
    sessions.touch(dbs, user_id=uid, session_id=made[1].id, messages_added=2)
    first = sessions.list_for_owner(dbs, user_id=uid, limit=2)
    second = sessions.list_for_owner(dbs, user_id=uid, limit=2, offset=2)
    assert first[0].id == made[1].id
    assert len(first) == 2 and len(second) == 2
    assert not {s.id for s in first} & {s.id for s in second}
    assert sessions.count_for_owner(dbs, user_id=uid) == 5


def test_touch_adds_counts(dbs: Session) -> None:
    uid = make_user(dbs)
    row = sessions.create(dbs, user_id=uid)
    sessions.touch(
        dbs,
        user_id=uid,
        session_id=row.id,
        messages_added=2,
        prompt_tokens=10,
        completion_tokens=30,
        model="m1",
    )
    sessions.touch(dbs, user_id=uid, session_id=row.id, messages_added=2, completion_tokens=5)
    assert (row.message_count, row.prompt_tokens, row.completion_tokens, row.model) == (
        4,
        10,
        35,
        "m1",
    )


def test_history_appends_and_reads_last(r: redis.Redis) -> None:
    sid = uuid.uuid4()
    for i in range(10):
        history.append(r, session_id=sid, message=history.make_message("user", f"m{i}"))
    assert history.count(r, session_id=sid) == 10
    assert [m["content"] for m in history.read_last(r, session_id=sid, n=3)] == ["m7", "m8", "m9"]
    assert r.type(f"session:{sid}") == "list"


def test_history_keeps_any_unicode_and_control_characters(r: redis.Redis) -> None:
    sid = uuid.uuid4()
    text = 'naïve £€¥ 李 \x00\x1b[31m \u202e 🧾 "quotes" \\ end'
    history.append(r, session_id=sid, message=history.make_message("user", text, stats={"t": 1}))
    (msg,) = history.read_all(r, session_id=sid)
    assert msg["content"] == text and msg["stats"] == {"t": 1} and msg["ts"]


def test_delete_session_removes_history_and_keeps_usage(dbs: Session, r: redis.Redis) -> None:
    uid = make_user(dbs)
    row = sessions.create(dbs, user_id=uid)
    history.append(r, session_id=row.id, message=history.make_message("user", "hi"))
    usage_log.record_call(
        dbs,
        user_id=uid,
        session_id=row.id,
        model="m",
        backend="ollama",
        prompt_tokens=3,
        completion_tokens=4,
        ttft_ms=5.0,
        duration_ms=9.0,
        outcome="ok",
    )
    dbs.commit()
    sid = row.id
    sessions.delete(dbs, r, user_id=uid, session_id=sid)
    dbs.commit()
    assert history.count(r, session_id=sid) == 0
    assert dbs.scalars(select(ConversationSession.id)).all() == []
    with pytest.raises(NotFound):
        sessions.get_for_owner(dbs, user_id=uid, session_id=sid)
    (call,) = dbs.scalars(select(LlmCall)).all()
    assert call.session_id is None and call.completion_tokens == 4


def test_deleting_never_touches_another_users_data(dbs: Session, r: redis.Redis) -> None:
    alice, bob = make_user(dbs, "alice"), make_user(dbs, "bob")
    row = sessions.create(dbs, user_id=alice)
    history.append(r, session_id=row.id, message=history.make_message("user", "keep me"))
    with pytest.raises(NotFound):
        sessions.delete(dbs, r, user_id=bob, session_id=row.id)
    assert history.count(r, session_id=row.id) == 1
    assert sessions.get_for_owner(dbs, user_id=alice, session_id=row.id)


def test_scoped_messages_refuse_other_owner(dbs: Session, r: redis.Redis) -> None:
    alice, bob = make_user(dbs, "alice"), make_user(dbs, "bob")
    row = sessions.create(dbs, user_id=alice)
    history.append(r, session_id=row.id, message=history.make_message("user", "secret"))
    assert sessions.messages(dbs, r, user_id=alice, session_id=row.id)[0]["content"] == "secret"
    with pytest.raises(NotFound):
        sessions.messages(dbs, r, user_id=bob, session_id=row.id)


def test_usage_outcome_is_checked(dbs: Session) -> None:
    uid = make_user(dbs)
    with pytest.raises(ValueError):
        usage_log.record_call(
            dbs,
            user_id=uid,
            session_id=None,
            model="m",
            backend="b",
            prompt_tokens=0,
            completion_tokens=0,
            ttft_ms=None,
            duration_ms=0,
            outcome="maybe",
        )


# --- any text: stored exactly, or refused by validation --------------------------------------

DB_EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_serial = itertools.count()


def fresh_user(dbs: Session, display_name: str = "Analyst") -> uuid.UUID:
    n = next(_serial)
    return accounts.create_user(
        dbs,
        username=f"user{n}",
        email=f"user{n}@example.com",
        display_name=display_name,
        password=PASSWORD,
    ).id


@DB_EXAMPLES
@given(name=any_text)
def test_any_display_name_that_validates_is_stored_exactly(dbs: Session, name: str) -> None:
    try:
        expected = accounts.validate_display_name(name)
    except InvalidInput:
        assume(False)
    uid = fresh_user(dbs, display_name=name)
    dbs.commit()
    dbs.expire_all()
    assert accounts.get_by_id(dbs, user_id=uid).display_name == expected  # type: ignore[union-attr]


@DB_EXAMPLES
@given(title=any_text)
def test_any_title_is_stored_as_cleaned_or_refused(dbs: Session, title: str) -> None:
    uid = fresh_user(dbs)
    row = sessions.create(dbs, user_id=uid)
    try:
        expected = sessions.clean_title(title)
    except InvalidInput:
        with pytest.raises(InvalidInput):
            sessions.rename(dbs, user_id=uid, session_id=row.id, title=title)
        return
    sessions.rename(dbs, user_id=uid, session_id=row.id, title=title)
    dbs.commit()
    dbs.expire_all()
    assert sessions.get_for_owner(dbs, user_id=uid, session_id=row.id).title == expected


@DB_EXAMPLES
@given(content=any_text | ten_kilobytes)
def test_any_message_comes_back_from_redis_exactly(r: redis.Redis, content: str) -> None:
    sid = uuid.uuid4()
    history.append(
        r, session_id=sid, message=history.make_message("assistant", content, stats={content: 1})
    )
    (msg,) = history.read_last(r, session_id=sid, n=1)
    expected = as_stored(content)
    assert msg["content"] == expected and msg["stats"] == {expected: 1}


def test_a_surrogate_pair_written_as_two_code_units_reads_back_as_its_character(
    r: redis.Redis,
) -> None:
    sid = uuid.uuid4()
    for content in ("\ud800\udc00", "lone \ud800 high", "lone \udc00 low"):
        history.append(r, session_id=sid, message=history.make_message("user", content))
    assert [m["content"] for m in history.read_all(r, session_id=sid)] == [
        "\U00010000",
        "lone \ud800 high",
        "lone \udc00 low",
    ]


def test_a_one_megabyte_message_round_trips(r: redis.Redis) -> None:
    sid = uuid.uuid4()
    content = "Q3 «EBITDA» 李 🧾 " * 60_000
    history.append(r, session_id=sid, message=history.make_message("user", content))
    assert history.read_all(r, session_id=sid)[0]["content"] == content


@pytest.mark.parametrize(
    "username",
    ["nul\x00byte", "lone\ud800surrogate", "x" * 10_000, "alice' OR '1'='1", ""],
    ids=["nul", "surrogate", "10kB", "sql", "empty"],
)
def test_looking_up_a_name_no_account_can_have_finds_nothing(dbs: Session, username: str) -> None:
    make_user(dbs, "alice")
    assert accounts.get_by_username(dbs, username=username) is None
    assert accounts.get_by_email(dbs, email=username + "@example.com") is None
    with pytest.raises(AuthenticationFailed):
        login.authenticate(dbs, services.redis_client(), username=username, password=PASSWORD)
    assert accounts.get_by_username(dbs, username="alice") is not None  # session still usable


@pytest.mark.parametrize(
    ("field", "values", "message"),
    [
        ("display_name", {"display_name": "d" * 10_000}, "at most 100"),
        ("email", {"email": "e" * 10_000 + "@example.com"}, "valid email"),
        ("password", {"password": "p" * 10_000}, "at most 1024"),
    ],
)
def test_ten_kilobyte_account_fields_are_refused_with_a_message(
    dbs: Session, field: str, values: dict[str, str], message: str
) -> None:
    fields = {
        "username": "tenkb",
        "email": "tenkb@example.com",
        "display_name": "Ten",
        "password": PASSWORD,
    }
    with pytest.raises(InvalidInput, match=message) as caught:
        accounts.create_user(dbs, **(fields | values))
    assert caught.value.field == field


def test_a_ten_kilobyte_prompt_makes_a_shortened_title(dbs: Session) -> None:
    uid = make_user(dbs)
    row = sessions.create(dbs, user_id=uid, title="Explain   EBITDA\n" * 600)
    assert len(row.title) == sessions.MAX_TITLE and row.title.endswith("…")
    assert "\n" not in row.title


def test_touches_ending_at_once_in_one_session_all_count(dbs: Session) -> None:
    """Two turns of one session finishing together (two tabs): the second waits for the
    first's row lock and then adds to what it committed, so neither count is lost."""
    import threading

    from core import database

    uid = make_user(dbs)
    sid = sessions.create(dbs, user_id=uid).id
    dbs.commit()
    first = database.get_sessionmaker()()
    sessions.touch(first, user_id=uid, session_id=sid, messages_added=2, completion_tokens=7)
    done: list[int] = []

    def second_tab() -> None:
        with database.get_sessionmaker()() as other:
            row = sessions.touch(other, user_id=uid, session_id=sid, messages_added=2)
            other.commit()
            done.append(row.message_count)

    worker = threading.Thread(target=second_tab)
    worker.start()
    worker.join(0.3)  # it blocks on the row the first transaction updated
    assert worker.is_alive() and not done
    first.commit()
    first.close()
    worker.join(10)
    assert done == [4]
    dbs.expire_all()
    row = sessions.get_for_owner(dbs, user_id=uid, session_id=sid)
    assert (row.message_count, row.completion_tokens) == (4, 7)
