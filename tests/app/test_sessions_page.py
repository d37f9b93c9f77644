"""The sessions page (AppTest): list, search, open, rename, export, delete, admin filter."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from core import clock, history, sessions, text
from core.accounts import Identity
from tests.app.conftest import download
from tests.support.people import identity

NOW = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
Page = Callable[[str, Identity], AppTest]


def conversation(
    dbs: Session, r: redis.Redis, who: Identity, title: str, texts: list[str], age: timedelta
) -> uuid.UUID:
    clock.set_source(lambda: NOW - age)
    row = sessions.create(dbs, user_id=who.id, title=title, model="llama3.2:3b")
    for i, content in enumerate(texts):
        role = "user" if i % 2 == 0 else "assistant"
        history.append(r, session_id=row.id, message=history.make_message(role, content))
    sessions.touch(
        dbs,
        user_id=who.id,
        session_id=row.id,
        messages_added=len(texts),
        prompt_tokens=100,
        completion_tokens=23,
    )
    clock.set_source(lambda: NOW)
    return row.id


@pytest.fixture
def world(dbs: Session, r: redis.Redis) -> dict[str, object]:
    alice, bob = identity(dbs, "alice"), identity(dbs, "bob")
    root = identity(dbs, "root", "admin")
    ids = {
        "old": conversation(dbs, r, alice, "Old budget", ["opex plan"], timedelta(days=100)),
        "dcf": conversation(
            dbs,
            r,
            alice,
            "DCF <b>model</b>",
            ["Set up a DCF", "Use <script>x</script> EBITDA (1 + g) here"],
            timedelta(hours=3),
        ),
        "bobs": conversation(dbs, r, bob, "Bob's EBITDA", ["bob stuff"], timedelta(hours=1)),
    }
    dbs.commit()
    return {"alice": alice, "bob": bob, "root": root, **ids}


def test_lists_own_sessions_newest_first_with_their_figures(page: Page, world: dict) -> None:
    at = page("sessions", world["alice"]).run()
    assert not at.exception
    titles = [m.value for m in at.markdown if m.value.startswith("####")]
    assert titles == ["#### " + text.escape_markdown("DCF <b>model</b>"), "#### Old budget"]
    captions = [c.value for c in at.caption]
    assert captions[1] == "Sessions 1–2 of 2"
    assert "llama3\\.2\\:3b · 2 messages · 123 tokens · last activity 3 h ago" in captions[2]
    assert not at.selectbox  # no user filter for analysts


def test_open_links_to_the_chat_page_with_the_session_id(page: Page, world: dict) -> None:
    at = page("sessions", world["alice"]).run()
    links = at.get("page_link")
    assert [link.proto.query_string for link in links] == [
        f"session={world['dcf']}",
        f"session={world['old']}",
    ]
    assert {link.proto.page for link in links} == {"chat"}


def test_search_highlights_matches_and_escapes_markup(page: Page, world: dict) -> None:
    at = page("sessions", world["alice"])
    at.run()
    at.text_input(key="query").set_value("ebitda").run()
    assert at.caption[1].value.startswith("1 session matches; searched titles and 3 messages")
    notes = [m.value for m in at.markdown if "assistant #2" in m.value]
    assert notes == [
        "_assistant #2:_ Use \\<script\\>x\\<\\/script\\> :orange-background[**EBITDA**] "
        "\\(1 \\+ g\\) here"
    ]


def test_search_with_metacharacters_finds_only_literal_text(page: Page, world: dict) -> None:
    at = page("sessions", world["alice"])
    at.run()
    at.text_input(key="query").set_value("(1 + g)").run()
    assert at.caption[1].value.startswith("1 session matches")
    at.text_input(key="query").set_value(".*").run()
    assert at.caption[1].value.startswith("0 sessions match")
    assert not at.exception and not at.error


def test_rename_from_the_manage_panel(page: Page, world: dict, dbs: Session) -> None:
    sid = world["dcf"]
    at = page("sessions", world["alice"]).run()
    at.button(key=f"manage-{sid}").click().run()
    at.text_input(key=f"title-{sid}").set_value("DCF – Contoso").run()
    at.button(key=f"rename-{sid}").click().run()
    assert not at.exception
    dbs.expire_all()
    assert (
        sessions.get_for_owner(dbs, user_id=world["alice"].id, session_id=sid).title
        == "DCF – Contoso"
    )
    assert "#### DCF – Contoso" in [m.value for m in at.markdown]


def test_rename_to_an_empty_title_shows_the_reason(page: Page, world: dict) -> None:
    sid = world["dcf"]
    at = page("sessions", world["alice"]).run()
    at.button(key=f"manage-{sid}").click().run()
    at.text_input(key=f"title-{sid}").set_value("   ").run()
    at.button(key=f"rename-{sid}").click().run()
    assert [e.value for e in at.error] == ["Title must not be empty."]


def test_export_buttons_deliver_markdown_and_json(page: Page, world: dict, downloads: dict) -> None:
    sid = world["dcf"]
    at = page("sessions", world["alice"]).run()
    at.button(key=f"manage-{sid}").click().run()
    md, md_name = download(at, downloads, "Export Markdown")
    js, js_name = download(at, downloads, "Export JSON")
    assert md_name == f"ledger-dcf-b-model-b-{sid.hex[:8]}.md"
    assert js_name == f"ledger-dcf-b-model-b-{sid.hex[:8]}.json"
    assert md.decode().startswith("# " + text.escape_markdown("DCF <b>model</b>") + "\n")
    body = json.loads(js)
    assert [m["content"] for m in body["messages"]] == [
        "Set up a DCF",
        "Use <script>x</script> EBITDA (1 + g) here",
    ]
    assert all(m["timestamp"] and m["status"] == "complete" for m in body["messages"])


def test_delete_asks_for_confirmation_then_removes_row_and_history(
    page: Page, world: dict, dbs: Session, r: redis.Redis
) -> None:
    sid = world["dcf"]
    at = page("sessions", world["alice"]).run()
    at.button(key=f"manage-{sid}").click().run()
    at.button(key=f"delete-{sid}").click().run()
    assert "Delete “DCF \\<b\\>model\\<\\/b\\>” and its 2 messages?" in at.warning[0].value
    at.button(key=f"no-{sid}").click().run()
    assert not at.warning and history.count(r, session_id=sid) == 2
    at.button(key=f"delete-{sid}").click().run()
    at.button(key=f"yes-{sid}").click().run()
    assert not at.exception
    assert history.count(r, session_id=sid) == 0
    assert [s.id for s in sessions.browse(dbs, user_id=world["alice"].id).items] == [world["old"]]
    assert history.count(r, session_id=world["bobs"]) == 1  # never another user's data


def test_delete_sessions_older_than_n_days_needs_the_checkbox(
    page: Page, world: dict, dbs: Session, r: redis.Redis
) -> None:
    at = page("sessions", world["alice"]).run()
    at.number_input(key="days").set_value(30).run()
    assert "1 session(s) had no activity for 30 days." in [m.value for m in at.markdown]
    assert at.button(key="purge").disabled
    at.checkbox(key="sure").check().run()
    at.button(key="purge").click().run()
    assert [s.value for s in at.success] == ["Deleted 1 session(s)."]
    titles = [m.value for m in at.markdown if m.value.startswith("####")]
    assert titles == ["#### " + text.escape_markdown("DCF <b>model</b>")]  # the list is current
    assert "0 session(s) had no activity for 30 days." in [m.value for m in at.markdown]
    assert history.count(r, session_id=world["old"]) == 0
    assert [s.id for s in sessions.browse(dbs, user_id=world["alice"].id).items] == [world["dcf"]]
    assert sessions.browse(dbs, user_id=world["bob"].id).total == 1


def test_admin_sees_all_users_or_filters_by_one(page: Page, world: dict) -> None:
    at = page("sessions", world["root"]).run()
    assert [i.value for i in at.info] == ["No sessions yet. Start a conversation on the Chat page."]
    at.selectbox[0].set_value("all").run()
    titles = [m.value for m in at.markdown if m.value.startswith("####")]
    assert titles == [
        "#### Bob\\'s EBITDA",
        "#### " + text.escape_markdown("DCF <b>model</b>"),
        "#### Old budget",
    ]
    assert any(c.value.startswith("bob · ") for c in at.caption)
    assert not at.get("expander")  # no bulk delete across all users
    at.selectbox[0].set_value(world["bob"].id).run()
    titles = [m.value for m in at.markdown if m.value.startswith("####")]
    assert titles == ["#### Bob\\'s EBITDA"]


def test_pages_through_many_sessions(page: Page, dbs: Session, r: redis.Redis) -> None:
    carol = identity(dbs, "carol")
    for i in range(25):
        conversation(dbs, r, carol, f"s{i:02d}", ["x"], timedelta(minutes=i))
    dbs.commit()
    at = page("sessions", carol).run()
    assert at.caption[1].value == "Sessions 1–20 of 25"
    at.button(key="older").click().run()
    assert at.caption[1].value == "Sessions 21–25 of 25"
    titles = [m.value for m in at.markdown if m.value.startswith("####")]
    assert titles == [f"#### s{i:02d}" for i in range(20, 25)]
