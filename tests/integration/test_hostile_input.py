"""Any text at every core write path and every lookup a URL or a form can reach: it is stored
as the validator says (exactly, or cleaned), or refused with a typed error before anything is
written; nothing else (no crash, no half-written state). Real PostgreSQL and Redis; the chat
turns go to a server speaking Ollama's protocol.

Validators alone are covered in tests/unit/test_validation.py; titles and display names in
tests/integration/test_stores.py. This file adds prompts (the whole chat turn), search text,
session ids from URLs, usernames, e-mails and passwords at login, and export files.
"""

from __future__ import annotations

import itertools
import json
import uuid

import pytest
import redis
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import (
    accounts,
    chat,
    database,
    export,
    history,
    llm,
    login,
    search,
    services,
    sessions,
    text,
)
from core.errors import EmptyPrompt, InvalidInput, LedgerError, NotFound
from core.models import ConversationSession, User
from tests.support.fake_ollama import FakeOllama
from tests.support.strategies import TRICKY, any_text, ten_kilobytes
from tests.support.unicode import as_stored

EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
PASSWORD = "a fine long passphrase"
_serial = itertools.count()

# What people paste into URL bars and forms to break things.
HOSTILE_IDS = [
    "../../etc/passwd", "' OR '1'='1", "1; DROP TABLE users;--", "%00", "\x00", "\ud800",
    "<script>alert(1)</script>", "{}", "null", "-1", "0" * 10_000, "00000000-0000-0000-0000",
    "urn:uuid:", "🧾", " ", "",
]  # fmt: skip


def new_user(dbs: Session) -> uuid.UUID:
    n = next(_serial)
    user = accounts.create_user(
        dbs,
        username=f"hostile{n}",
        email=f"hostile{n}@example.com",
        display_name="H",
        password=PASSWORD,
    )
    dbs.commit()
    return user.id


def sessions_of(dbs: Session, user_id: uuid.UUID) -> int:
    dbs.expire_all()
    stmt = select(func.count()).where(ConversationSession.user_id == user_id)
    return int(dbs.scalar(stmt) or 0)


# --- prompts: the whole chat turn ------------------------------------------------------------


@EXAMPLES
@given(prompt=any_text | ten_kilobytes)
@example(prompt="<script>alert(1)</script> **bold** [x](javascript:alert(1))")
@example(prompt="\x00\x00")
@example(prompt="$5 and $6")
def test_any_prompt_is_stored_as_cleaned_or_refused_with_nothing_written(
    ollama_env: FakeOllama, dbs: Session, r: redis.Redis, prompt: str
) -> None:
    uid = new_user(dbs)
    try:
        expected = chat.clean_prompt(prompt)
    except (EmptyPrompt, InvalidInput) as refusal:
        with pytest.raises(type(refusal)):
            chat.turn(database.get_sessionmaker(), r, llm.get_backend(), user_id=uid, prompt=prompt)
        assert sessions_of(dbs, uid) == 0
        return
    t = chat.turn(database.get_sessionmaker(), r, llm.get_backend(), user_id=uid, prompt=prompt)
    sent_before = len(ollama_env.requests)
    try:
        reply = "".join(t)
    except InvalidInput as too_long:  # stored, then found too big for the context window
        assert "context window" in str(too_long)
        reply = ""
        assert len(ollama_env.requests) == sent_before  # never sent
    else:
        sent = ollama_env.requests[-1]["messages"][-1]
        assert sent == {"role": "user", "content": expected}  # the model saw what was stored
    stored = history.read_all(r, session_id=t.session_id)
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", expected),
        ("assistant", reply),
    ]
    row = sessions.get_for_owner(dbs, user_id=uid, session_id=t.session_id)
    assert row.title == sessions.title_from_prompt(expected)


# --- search text --------------------------------------------------------------------------


@EXAMPLES
@given(needle=any_text)
@example(needle="%")
@example(needle="_")
@example(needle="\\")
@example(needle=".*")
@example(needle="<b>x</b>")
@example(needle="a  b")
def test_any_search_text_finds_a_message_containing_it_or_is_refused(
    dbs: Session, r: redis.Redis, needle: str
) -> None:
    # Search text comes from a text box: a browser sends UTF-8, never a lone surrogate. (A
    # notebook could store one in a message; a surrogate PAIR would come back from Redis as
    # the one character it encodes, which no search text can then equal.)
    assume(not any("\ud800" <= ch <= "\udfff" for ch in needle))
    uid = new_user(dbs)
    row = sessions.create(dbs, user_id=uid, title="Quarterly review")
    dbs.commit()
    content = f"before {needle} after"
    history.append(r, session_id=row.id, message=history.make_message("assistant", content))
    try:
        query = search.clean_query(needle)
    except InvalidInput as refusal:
        assert refusal.field == "query"
        with pytest.raises(InvalidInput):
            search.find(dbs, r, user_id=uid, query=needle)
        return
    found = search.find(dbs, r, user_id=uid, query=needle)
    assert [hit.session.id for hit in found.hits] == [row.id], (query, content)
    for hit in found.hits:
        for match in hit.messages:
            match.snippet.markdown(open_mark="**", close_mark="**")  # renders, whatever the text


@pytest.mark.parametrize("needle", ["%", "_", "\\", "'", "' OR '1'='1", ".*", "[a-z]+"])
def test_search_metacharacters_match_only_themselves(
    dbs: Session, r: redis.Redis, needle: str
) -> None:
    uid = new_user(dbs)
    plain = sessions.create(dbs, user_id=uid, title="Plain words only")
    dbs.commit()
    history.append(r, session_id=plain.id, message=history.make_message("user", "nothing odd"))
    assert search.find(dbs, r, user_id=uid, query=needle).hits == []


# --- session ids from URLs ----------------------------------------------------------------


@EXAMPLES
@given(value=any_text | st.sampled_from(HOSTILE_IDS))
def test_any_session_id_from_a_url_is_not_found_and_changes_nothing(
    ollama_env: FakeOllama, dbs: Session, r: redis.Redis, value: str
) -> None:
    uid = new_user(dbs)
    try:
        parsed = uuid.UUID(value.strip())
    except ValueError:
        parsed = None
    assume(parsed is None or sessions_of(dbs, uid) == 0)  # a well-formed id: nobody's session
    keys = r.dbsize()
    readers = [
        lambda: sessions.messages(dbs, r, user_id=uid, session_id=value),
        lambda: sessions.summary(dbs, user_id=uid, session_id=value),
        lambda: export.to_json(dbs, r, user_id=uid, session_id=value),
        lambda: export.to_markdown(dbs, r, user_id=uid, session_id=value),
        lambda: sessions.rename(dbs, user_id=uid, session_id=value, title="x"),
        lambda: sessions.delete(dbs, r, user_id=uid, session_id=value),
        lambda: chat.turn(
            database.get_sessionmaker(),
            r,
            llm.get_backend(),
            user_id=uid,
            prompt="Hi",
            session_id=value,
        ),
    ]
    for call in readers:
        with pytest.raises(NotFound):
            call()
    dbs.rollback()
    assert r.dbsize() == keys and sessions_of(dbs, uid) == 0


def test_another_users_session_id_is_not_found_either(dbs: Session, r: redis.Redis) -> None:
    owner, other = new_user(dbs), new_user(dbs)
    row = sessions.create(dbs, user_id=owner, title="Mine")
    dbs.commit()
    with pytest.raises(NotFound):
        sessions.messages(dbs, r, user_id=other, session_id=str(row.id))
    with pytest.raises(NotFound):
        sessions.rename(dbs, user_id=other, session_id=str(row.id), title="Theirs now")


# --- accounts -----------------------------------------------------------------------------


@EXAMPLES
@given(username=any_text | st.sampled_from(TRICKY), email=any_text)
@example(username="Alice", email="alice@example.com")
@example(username="alice'--", email="<script>@x.y")
def test_any_username_and_email_are_stored_exactly_as_validated_or_refused(
    dbs: Session, username: str, email: str
) -> None:
    try:
        want_name = accounts.validate_username(username)
        want_email = accounts.validate_email(email)
    except InvalidInput as refusal:
        with pytest.raises(InvalidInput) as raised:
            accounts.create_user(
                dbs, username=username, email=email, display_name="X", password=PASSWORD
            )
        assert raised.value.field in ("username", "email")
        dbs.rollback()
        assert refusal.field in ("username", "email")
        return
    try:
        user = accounts.create_user(
            dbs, username=username, email=email, display_name="X", password=PASSWORD
        )
        dbs.commit()
    except LedgerError:  # taken by an earlier example (names are compared case-insensitively)
        dbs.rollback()
        return
    dbs.expire_all()
    stored = dbs.get(User, user.id)
    assert stored is not None and (stored.username, stored.email) == (want_name, want_email)


@EXAMPLES
@given(username=any_text | ten_kilobytes, password=any_text | ten_kilobytes)
def test_any_login_attempt_is_refused_with_a_reason_and_never_crashes(
    dbs: Session, username: str, password: str
) -> None:
    result = login.attempt(dbs, services.redis_client(), username=username, password=password)
    dbs.commit()
    assert result.identity is None and result.error is not None
    assert str(result.error).endswith(".")


# --- exports ------------------------------------------------------------------------------


@EXAMPLES
@given(title=any_text, content=any_text)
@example(title="../../etc/passwd", content="x")
@example(title="..\\..\\Windows\\system32", content="x")
@example(title="/absolute/path", content="x")
@example(title="CON", content="x")
@example(title=".hidden", content="lone \ud800 surrogate")
def test_exports_have_safe_names_and_carry_the_text_exactly(
    dbs: Session, r: redis.Redis, title: str, content: str
) -> None:
    uid = new_user(dbs)
    try:
        clean = sessions.clean_title(title)
    except InvalidInput:
        clean = "Untitled"
    row = sessions.create(dbs, user_id=uid, title=clean)
    dbs.commit()
    history.append(r, session_id=row.id, message=history.make_message("user", content))
    for exported in (
        export.to_json(dbs, r, user_id=uid, session_id=row.id),
        export.to_markdown(dbs, r, user_id=uid, session_id=row.id),
    ):
        name = exported.filename
        assert name == text.safe_filename(clean, suffix=row.id.hex[:8], ext=name.rsplit(".")[-1])
        assert "/" not in name and "\\" not in name and ".." not in name
        assert name.startswith("ledger-") and not name.startswith(".")
    body = json.loads(export.to_json(dbs, r, user_id=uid, session_id=row.id).data)
    assert body["session"]["title"] == clean
    assert body["messages"][0]["content"] == as_stored(content)
