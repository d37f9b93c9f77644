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
from core.models import ConversationSession
from tests.support.apptest import download
from tests.support.fake_ollama import FakeOllama
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
    assert md.decode().startswith("# DCF \\<b>model\\</b>\n")  # inert, and readable
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
    at = page("sessions", world["root"]).run()  # opens on everyone's
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
    at.selectbox[0].set_value(world["root"].id).run()
    assert [i.value for i in at.info] == ["No sessions yet. Start a conversation on the Chat page."]


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


# --- opening a session in the chat page ------------------------------------------------------

REPLY_STATS = {
    "model": "llama3.2:3b",
    "backend": "ollama",
    "outcome": "ok",
    "prompt_tokens": 180,
    "completion_tokens": 42,
    "ttft_ms": 212.4,
    "duration_ms": 900.0,
    "tokens_per_second": 61.3,
    "estimated": False,
}


@pytest.fixture
def bobs_talk(world: dict, dbs: Session, r: redis.Redis) -> uuid.UUID:
    """Bob's conversation with a reply and its stats, as the chat records them."""
    row = sessions.create(dbs, user_id=world["bob"].id, title="Bob's margins", model="llama3.2:3b")
    history.append(r, session_id=row.id, message=history.make_message("user", "Gross margin?"))
    reply = history.make_message("assistant", "Gross margin is 38%.", stats=REPLY_STATS)
    history.append(r, session_id=row.id, message=reply)
    sessions.touch(dbs, user_id=world["bob"].id, session_id=row.id, messages_added=2)
    dbs.commit()
    return row.id


def open_in_chat(page: Page, who: Identity, link: str) -> AppTest:
    """The chat page as a click on an "Open" link (``session=<id>``) shows it."""
    at = page("chat", who)
    at.query_params["session"] = link.removeprefix("session=")
    return at.run()


def chat_texts(at: AppTest) -> list[str]:
    return [md.value for message in at.chat_message for md in message.markdown]


def test_an_admin_opens_another_users_session_read_only(
    page: Page, world: dict, bobs_talk: uuid.UUID, r: redis.Redis, ollama_env: FakeOllama
) -> None:
    at = page("sessions", world["root"]).run()
    at.selectbox[0].set_value(world["bob"].id).run()
    (link,) = [x for x in at.get("page_link") if x.proto.query_string == f"session={bobs_talk}"]

    chat = open_in_chat(page, world["root"], link.proto.query_string)
    assert not chat.exception and not chat.error
    assert [i.value for i in chat.info] == [text.escape_markdown("Bob's conversation, read-only")]
    assert chat_texts(chat) == ["Gross margin?", "Gross margin is 38%."]
    assert "42 tokens · 61.3 tokens/s · first token 212 ms · llama3.2:3b" in [
        c.value for c in chat.caption
    ]
    assert not chat.chat_input  # nothing can be typed as Bob
    # Said at the top, before the messages; no model picker, tools or "Answering" line.
    assert "Read only" in chat.caption[0].value
    assert not chat.selectbox and not chat.toggle and not chat.sidebar.button
    assert not any(c.value.startswith("Answering") for c in chat.caption)
    assert history.count(r, session_id=bobs_talk) == 2


def test_a_prompt_kept_from_an_outage_is_not_offered_in_someone_elses_session(
    page: Page, world: dict, bobs_talk: uuid.UUID, r: redis.Redis, ollama_env: FakeOllama
) -> None:
    from app.recovery import UNSENT_KEY

    at = page("chat", world["root"])
    at.session_state[UNSENT_KEY] = "Root's own question"
    at.query_params["session"] = str(bobs_talk)
    at.run()
    assert not at.exception
    assert "send_unsent" not in [b.key for b in at.button]
    assert history.count(r, session_id=bobs_talk) == 2
    assert at.session_state[UNSENT_KEY] == "Root's own question"  # kept for the admin's own chat


def test_an_analyst_opening_someone_elses_id_sees_session_not_found(
    page: Page, world: dict, bobs_talk: uuid.UUID, ollama_env: FakeOllama
) -> None:
    shown = {}
    for case, sid in (("theirs", str(bobs_talk)), ("unknown", str(uuid.uuid4()))):
        chat = open_in_chat(page, world["alice"], f"session={sid}")
        assert not chat.exception
        shown[case] = (
            [e.value for e in chat.error],
            [i.value for i in chat.info],
            chat_texts(chat),
            len(chat.chat_input),
        )
    assert shown["theirs"] == shown["unknown"] == (["Session not found."], [], [], 0)


def test_a_deleted_session_opened_from_an_old_link_is_not_found(
    page: Page, world: dict, ollama_env: FakeOllama
) -> None:
    sid = world["dcf"]
    at = page("sessions", world["alice"]).run()
    (link,) = [x for x in at.get("page_link") if x.proto.query_string == f"session={sid}"]
    at.button(key=f"manage-{sid}").click().run()
    at.button(key=f"delete-{sid}").click().run()
    at.button(key=f"yes-{sid}").click().run()
    assert [s.value for s in at.success] == ["Session deleted."]

    chat = open_in_chat(page, world["alice"], link.proto.query_string)
    assert not chat.exception
    assert [e.value for e in chat.error] == ["Session not found."]
    assert chat_texts(chat) == [] and not chat.chat_input
    assert [b.label for b in chat.button if b.label == "Start a new chat"] == ["Start a new chat"]


# --- admins moderate other users' sessions ---------------------------------------------------


def test_an_admin_renames_another_users_session(page: Page, world: dict, dbs: Session) -> None:
    sid = world["bobs"]
    at = page("sessions", world["root"]).run()
    at.selectbox[0].set_value(world["bob"].id).run()
    at.button(key=f"manage-{sid}").click().run()
    at.text_input(key=f"title-{sid}").set_value("Moderated title").run()
    at.button(key=f"rename-{sid}").click().run()
    assert [s.value for s in at.success] == ["Renamed."]
    dbs.expire_all()
    assert sessions.summary(dbs, user_id=world["bob"].id, session_id=sid).title == "Moderated title"
    mine = [s.title for s in sessions.browse(dbs, user_id=world["alice"].id).items]
    assert mine == ["DCF <b>model</b>", "Old budget"]


def test_an_admin_exports_another_users_session(page: Page, world: dict, downloads: dict) -> None:
    sid = world["bobs"]
    at = page("sessions", world["root"]).run()
    at.selectbox[0].set_value("all").run()
    at.button(key=f"manage-{sid}").click().run()
    js, name = download(at, downloads, "Export JSON")
    body = json.loads(js)
    assert name == f"ledger-bob-s-ebitda-{sid.hex[:8]}.json"
    assert (body["session"]["owner"], body["session"]["id"]) == ("bob", str(sid))
    assert [m["content"] for m in body["messages"]] == ["bob stuff"]


def test_an_admin_deletes_another_users_session_and_only_that(
    page: Page, world: dict, dbs: Session, r: redis.Redis
) -> None:
    sid = world["bobs"]
    at = page("sessions", world["root"]).run()
    at.selectbox[0].set_value("all").run()
    at.button(key=f"manage-{sid}").click().run()
    at.button(key=f"delete-{sid}").click().run()
    at.button(key=f"yes-{sid}").click().run()
    assert [s.value for s in at.success] == ["Session deleted."]
    assert sessions.browse(dbs, user_id=world["bob"].id).total == 0
    assert dbs.get(ConversationSession, sid) is None
    assert history.count(r, session_id=sid) == 0
    alices = [s.id for s in sessions.browse(dbs, user_id=world["alice"].id).items]
    assert alices == [world["dcf"], world["old"]]
    assert history.count(r, session_id=world["dcf"]) == 2
    assert history.count(r, session_id=world["old"]) == 1


def test_an_admin_deletes_old_sessions_of_the_chosen_user_only(
    page: Page, world: dict, dbs: Session, r: redis.Redis
) -> None:
    bobs_old = conversation(dbs, r, world["bob"], "Bob's 2025", ["old"], timedelta(days=100))
    dbs.commit()
    at = page("sessions", world["root"]).run()
    at.selectbox[0].set_value(world["bob"].id).run()
    at.number_input(key="days").set_value(30).run()
    assert "1 session(s) had no activity for 30 days." in [m.value for m in at.markdown]
    at.checkbox(key="sure").check().run()
    at.button(key="purge").click().run()
    assert [s.value for s in at.success] == ["Deleted 1 session(s)."]
    assert [s.id for s in sessions.browse(dbs, user_id=world["bob"].id).items] == [world["bobs"]]
    assert history.count(r, session_id=bobs_old) == 0
    # Alice's session of the same age is untouched.
    assert world["old"] in [s.id for s in sessions.browse(dbs, user_id=world["alice"].id).items]
    assert history.count(r, session_id=world["old"]) == 1


def test_an_analyst_can_never_reach_another_users_sessions(
    page: Page, world: dict, dbs: Session
) -> None:
    at = page("sessions", world["alice"])
    # Whatever the browser's state says (a picked user, a selected session), an analyst's
    # page lists, searches and manages only their own.
    at.session_state["whose"] = world["bob"].id
    at.session_state["selected"] = world["bobs"]
    at.run()
    assert not at.exception and not at.selectbox
    keys = {b.key for b in at.button}
    assert f"manage-{world['bobs']}" not in keys and f"rename-{world['bobs']}" not in keys
    links = {x.proto.query_string for x in at.get("page_link")}
    assert links == {f"session={world['dcf']}", f"session={world['old']}"}
    at.text_input(key="query").set_value("bob").run()
    assert at.caption[1].value.startswith("0 sessions match")
    assert sessions.browse(dbs, user_id=world["bob"].id).total == 1


# --- bad input -------------------------------------------------------------------------------


def test_a_search_longer_than_allowed_says_so(page: Page, world: dict) -> None:
    at = page("sessions", world["alice"]).run()
    at.text_input(key="query").set_value("x" * 10_240).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"Search text is too long (10,240 characters); use at most {text.MAX_QUERY_CHARS:,}."
    ]
    assert not [m.value for m in at.markdown if m.value.startswith("####")]  # no stale list
