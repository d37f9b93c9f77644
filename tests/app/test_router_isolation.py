"""Isolation between users through the real router (app/router.py), as a signed-in browser sees it:
another user's sessions, history and usage are never shown, searched, exported or deleted;
admin pages refuse analysts; admins can look at one user or everyone.

Ends with one analyst's journey: log in, chat (fake Ollama), find the session on the Sessions
page and the request on the Usage page.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from core import clock, history, sessions, text, usage_log
from core.models import LlmCall, User
from tests.support.apptest import Sidebar, chart_data, download
from tests.support.fake_ollama import FakeOllama
from tests.support.people import make_user
from tests.support.router import browser, errors, go, login, open_url, page

ADMIN_REFUSAL = "This page is for administrators."


def conversation(
    dbs: Session, r: redis.Redis, owner: User, title: str, contents: list[str], age_days: int = 0
) -> uuid.UUID:
    when = clock.now() - timedelta(days=age_days)
    row = sessions.create(dbs, user_id=owner.id, title=title, model="llama3.2:3b")
    for i, content in enumerate(contents):
        role = "user" if i % 2 == 0 else "assistant"
        history.append(r, session_id=row.id, message=history.make_message(role, content))
    sessions.touch(dbs, user_id=owner.id, session_id=row.id, messages_added=len(contents), at=when)
    return row.id


def calls(dbs: Session, owner: User, sid: uuid.UUID, tokens: list[int]) -> None:
    for n in tokens:
        usage_log.record_call(
            dbs,
            user_id=owner.id,
            session_id=sid,
            model="llama3.2:3b",
            backend="ollama",
            prompt_tokens=n,
            completion_tokens=n,
            ttft_ms=100.0,
            duration_ms=1000.0,
            outcome="ok",
        )


@pytest.fixture
def world(jar: dict[str, str], dbs: Session, r: redis.Redis) -> dict[str, Any]:
    alice, bob = make_user(dbs, "alice"), make_user(dbs, "bob")
    root = make_user(dbs, "root", "admin")
    ids = {
        "alice_chat": conversation(
            dbs, r, alice, "Alice's budget", ["EBITDA bridge", "Here it is"]
        ),
        "alice_old": conversation(dbs, r, alice, "Alice's 2025 plan", ["old plan"], 100),
        "bob_chat": conversation(
            dbs, r, bob, "Bob's merger", ["Contoso EBITDA secret", "Bob's reply"]
        ),
        "bob_old": conversation(dbs, r, bob, "Bob's old deal", ["old EBITDA secret"], 100),
    }
    calls(dbs, alice, ids["alice_chat"], [10, 20])
    calls(dbs, bob, ids["bob_chat"], [100, 200, 300])
    dbs.commit()
    return {"alice": alice, "bob": bob, "root": root, **ids}


def rendered(at: AppTest) -> dict[str, list[str]]:
    """What the main area shows, element by element (the sidebar is the same for everyone)."""
    shown: dict[str, list[str]] = {}
    for kind in ("title", "caption", "markdown", "error", "warning", "info", "success", "code"):
        shown[kind] = [str(e.value) for e in at.main.get(kind)]
    shown["button"] = [str(b.label) for b in at.main.get("button")]
    shown["chat_message"] = [str(m.name) for m in at.main.get("chat_message")]
    shown["chat_input"] = [str(c.placeholder) for c in at.get("chat_input")]
    return shown


def titles(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("#### ")]


def title(raw: str) -> str:
    return "#### " + text.escape_markdown(raw)


def kpis(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def still_there(dbs: Session, r: redis.Redis, owner: User, sid: uuid.UUID, messages: int) -> bool:
    dbs.expire_all()
    row = sessions.get_for_owner(dbs, user_id=owner.id, session_id=sid)
    return row.message_count == messages and history.count(r, session_id=sid) == messages


# --- chat: a session id in the URL -----------------------------------------------------------


def test_anothers_session_in_the_url_reads_exactly_like_an_unknown_one(
    world: dict[str, Any], dbs: Session, r: redis.Redis
) -> None:
    at = login(browser(), "alice")
    assert page(at) == "Chat"

    def visit(session_id: str) -> dict[str, list[str]]:
        at.query_params["session"] = session_id
        at.run()
        assert page(at) == "Chat"
        return rendered(at)

    theirs, unknown = visit(str(world["bob_chat"])), visit(str(uuid.uuid4()))
    assert theirs == unknown
    assert theirs["error"] == ["Session not found."]
    assert theirs["chat_message"] == [] and theirs["chat_input"] == []
    assert "secret" not in repr(theirs) and "Bob" not in repr(theirs)
    assert still_there(dbs, r, world["bob"], world["bob_chat"], 2)

    mine = visit(str(world["alice_chat"]))
    assert mine["error"] == [] and mine["chat_message"] == ["user", "assistant"]


# --- sessions page ---------------------------------------------------------------------------


def test_the_sessions_page_lists_and_links_only_ones_own_sessions(
    world: dict[str, Any],
) -> None:
    at = go(login(browser(), "alice"), "sessions")
    assert page(at) == "Sessions" and not at.selectbox  # no "whose sessions" for analysts
    assert titles(at) == [title("Alice's budget"), title("Alice's 2025 plan")]
    links = {link.proto.query_string for link in at.get("page_link")}
    assert links == {f"session={world['alice_chat']}", f"session={world['alice_old']}"}
    keys = {b.key for b in at.button}
    assert f"manage-{world['bob_chat']}" not in keys and f"manage-{world['bob_old']}" not in keys


def test_searching_finds_only_ones_own_messages(world: dict[str, Any]) -> None:
    at = go(login(browser(), "alice"), "sessions")
    for query in ("EBITDA", "secret", "Contoso", "Bob"):
        at.text_input(key="query").set_value(query).run()
        assert not at.exception
        expected = [title("Alice's budget")] if query == "EBITDA" else []
        assert titles(at) == expected, query
        assert "secret" not in repr(rendered(at))


def test_exports_hold_only_the_chosen_own_session(
    world: dict[str, Any], downloads: dict[str, tuple[bytes, str | None]]
) -> None:
    at = go(login(browser(), "alice"), "sessions")
    at.button(key=f"manage-{world['alice_chat']}").click().run()
    for label in ("Export Markdown", "Export JSON"):
        data, _ = download(at, downloads, label)
        assert b"EBITDA bridge" in data
        assert b"secret" not in data and b"Bob" not in data


def test_deleting_old_sessions_never_touches_another_users(
    world: dict[str, Any], dbs: Session, r: redis.Redis
) -> None:
    at = go(login(browser(), "alice"), "sessions")
    at.number_input(key="days").set_value(30).run()
    assert "1 session(s) had no activity for 30 days." in [m.value for m in at.markdown]
    at.checkbox(key="sure").check().run()
    at.button(key="purge").click().run()
    assert [s.value for s in at.success] == ["Deleted 1 session(s)."]
    assert titles(at) == [title("Alice's budget")]
    assert still_there(dbs, r, world["bob"], world["bob_old"], 1)
    assert still_there(dbs, r, world["bob"], world["bob_chat"], 2)


def test_deleting_a_session_from_the_manage_panel_deletes_only_that_one(
    world: dict[str, Any], dbs: Session, r: redis.Redis
) -> None:
    sid = world["alice_chat"]
    at = go(login(browser(), "alice"), "sessions")
    at.button(key=f"manage-{sid}").click().run()
    at.button(key=f"delete-{sid}").click().run()
    at.button(key=f"yes-{sid}").click().run()
    assert [s.value for s in at.success] == ["Session deleted."]
    assert titles(at) == [title("Alice's 2025 plan")]
    assert history.count(r, session_id=sid) == 0
    assert still_there(dbs, r, world["bob"], world["bob_chat"], 2)


# --- usage page ------------------------------------------------------------------------------


def test_the_usage_page_shows_only_ones_own_figures(world: dict[str, Any]) -> None:
    at = go(login(browser(), "alice"), "usage")
    assert page(at) == "Usage" and not at.selectbox
    shown = kpis(at)
    assert shown["Requests"] == "2"
    assert shown["Prompt tokens"] == "30" and shown["Completion tokens"] == "30"
    assert shown["Tokens used today"] == "60"
    top = chart_data(at)["Top sessions by tokens"]
    assert list(top["title"]) == ["Alice's budget"]


def test_an_analyst_cannot_pick_another_user_even_by_forging_the_widget_state(
    world: dict[str, Any],
) -> None:
    at = go(login(browser(), "alice"), "usage")
    at.session_state["whose"] = world["bob"].id
    at.run()
    assert not at.selectbox and kpis(at)["Requests"] == "2"
    go(at, "sessions")
    assert titles(at) == [title("Alice's budget"), title("Alice's 2025 plan")]


# --- admin pages -----------------------------------------------------------------------------


@pytest.mark.parametrize("admin_page", ["admin", "status"])
def test_admin_pages_refuse_an_analyst(world: dict[str, Any], admin_page: str) -> None:
    at = open_url(login(browser(), "alice"), admin_page)
    assert errors(at) == [ADMIN_REFUSAL]
    assert not at.dataframe and not at.success
    assert not [m for m in at.markdown if "PostgreSQL" in m.value or "bob" in m.value]


MEMBER_LINKS = ["Chat", "Sessions", "Data", "Documents", "Usage", "Account"]


def test_an_analysts_sidebar_has_no_administration_links(
    world: dict[str, Any], sidebar: Sidebar
) -> None:
    at = login(browser(), "alice")
    assert page(at) == "Chat"
    assert sidebar.links() == {"": MEMBER_LINKS}
    assert {"admin", "status"} <= sidebar.url_paths()  # answered, with the refusal


def test_an_admins_sidebar_adds_admin_and_status_under_administration(
    world: dict[str, Any], sidebar: Sidebar
) -> None:
    at = login(browser(), "root")
    assert page(at) == "Chat"
    assert sidebar.links() == {"": MEMBER_LINKS, "Administration": ["Admin", "Status"]}


def test_for_an_analyst_the_admin_page_file_is_not_registered_at_all(
    world: dict[str, Any],
) -> None:
    """/admin is only the refusal page for an analyst: pages/admin.py is not among the
    pages st.navigation registered, so nothing can run it (AppTest says so by refusing
    to switch to a file the router did not register)."""
    at = login(browser(), "alice")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("../pages/admin.py")
    assert page(go(login(browser(), "root"), "admin")) == "Admin"


@pytest.mark.parametrize("admin_page", ["admin", "status"])
def test_admin_pages_refuse_an_analyst_even_without_the_router(
    world: dict[str, Any], admin_page: str
) -> None:
    from core.accounts import Identity
    from tests.support.router import ROOT

    at = AppTest.from_file(str(ROOT / "pages" / f"{admin_page}.py"), default_timeout=30)
    at.session_state["identity"] = Identity.of(world["alice"])
    at.run()
    assert errors(at) == [ADMIN_REFUSAL] and not at.dataframe and not at.success


def test_an_admin_can_look_at_one_user_or_everyone(world: dict[str, Any]) -> None:
    at = go(login(browser(), "root"), "sessions")
    assert len(titles(at)) == 4  # an administrator opens on everyone's
    at.selectbox(key="whose").set_value(world["root"].id).run()
    assert titles(at) == []  # the admin's own sessions: none
    at.selectbox(key="whose").set_value(world["bob"].id).run()
    assert titles(at) == [title("Bob's merger"), title("Bob's old deal")]
    at.selectbox(key="whose").set_value("all").run()
    assert len(titles(at)) == 4

    go(at, "usage")
    at.selectbox(key="whose").set_value(world["bob"].id).run()
    assert kpis(at)["Requests"] == "3" and kpis(at)["Prompt tokens"] == "600"
    at.selectbox(key="whose").set_value("all").run()
    assert kpis(at)["Requests"] == "5"

    go(at, "admin")
    assert errors(at) == [] and at.dataframe
    go(at, "status")
    assert errors(at) == [] and at.success


# --- one analyst's day -----------------------------------------------------------------------


def test_login_chat_then_find_the_session_and_the_request(
    jar: dict[str, str], dbs: Session, ollama_env: FakeOllama
) -> None:
    make_user(dbs, "alice")
    dbs.commit()
    ollama_env.script(reply=["EBITDA", " is", " earnings", " before", " interest"])
    at = login(browser(), "alice")
    assert page(at) == "Chat" and not errors(at)

    at.chat_input[0].set_value("What is EBITDA?").run()
    assert not errors(at)
    replies = [md.value for msg in at.chat_message for md in msg.markdown]
    assert replies == ["What is EBITDA?", "EBITDA is earnings before interest"]
    sid = uuid.UUID(at.query_params["session"])

    go(at, "sessions")
    assert titles(at) == [title("What is EBITDA?")]
    assert any("2 messages" in c.value for c in at.caption)
    assert {link.proto.query_string for link in at.get("page_link")} == {f"session={sid}"}

    (call,) = dbs.scalars(select(LlmCall)).all()
    assert (call.session_id, call.outcome, call.completion_tokens) == (sid, "ok", 5)
    go(at, "usage")
    shown = kpis(at)
    assert shown["Requests"] == "1" and shown["Error rate"] == "0.0%"
    assert shown["Prompt tokens"] == f"{call.prompt_tokens:,}"
    assert shown["Completion tokens"] == "5"
    assert shown["Tokens used today"] == f"{call.prompt_tokens + 5:,}"


def test_a_notice_stays_on_the_page_that_earned_it(world: dict[str, Any]) -> None:
    at = go(login(browser(), "alice"), "sessions")
    sid = world["alice_chat"]
    at.button(key=f"manage-{sid}").click().run()
    at.text_input(key=f"title-{sid}").set_value("Alice's bridge").run()
    at.button(key=f"rename-{sid}").click().run()
    assert [s.value for s in at.success] == ["Renamed."]
    go(at, "usage")  # within the notice's few seconds
    assert page(at) == "Usage" and not at.success
    go(at, "sessions")
    assert not at.success  # and it is gone, not waiting for a return
