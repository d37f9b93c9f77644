"""Faults injected into real servers while an analyst chats in a real browser.

The app (`streamlit run`, one process for the module) uses servers this module owns and
breaks on purpose: a redis-server (append-only file synced on every write, as production
would run it), a PostgreSQL 16 on a TCP port, and a fake Ollama server in a process of its
own (so it can be SIGKILLed mid-reply). LLM timeouts are small and the tests hold the app to
them. For each fault: the page says clearly what is wrong, the app recovers when the service
is back WITHOUT being restarted, and no message the app acknowledged is lost (messages are
counted in Redis and PostgreSQL before and after).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, text

from core import accounts, db, migrate
from tests.support import browser as b
from tests.support.app_server import AppServer
from tests.support.fake_ollama import FakeOllamaProcess
from tests.support.pg_server import PostgresServer
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

USER, PASSWORD = "fay.analyst", "faults are facts of life"
MODEL = "llama3.2:3b"
READ_TIMEOUT = 1.5  # LLM_READ_TIMEOUT_SECONDS for the app: a silent server fails this fast
REPLY = (
    "Net debt is total borrowings minus cash and equivalents; divide it by EBITDA to see how "
    "many years of operating profit would repay it."
)


# --- the servers and the app ---------------------------------------------------------------


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("fault-redis"), persistent=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PostgresServer]:
    server = PostgresServer().init()
    server.start()
    engine = create_engine(server.url)
    migrate.upgrade(engine)
    engine.dispose()
    with db.session_scope(server.url) as session:
        accounts.create_user(
            session, username=USER, email="fay@example.com", display_name="Fay", password=PASSWORD
        )
    yield server
    db.reset()
    server.destroy()


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOllamaProcess]:
    server = FakeOllamaProcess(models=[MODEL]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app(
    own_redis: RedisServer,
    own_pg: PostgresServer,
    llm: FakeOllamaProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppServer]:
    work = tmp_path_factory.mktemp("fault-app")
    server = AppServer(
        {
            "DATABASE_URL": own_pg.url,
            "REDIS_URL": own_redis.url,
            "DATA_DIR": str(work / "data"),
            "LLM_BACKEND": "ollama",
            "OLLAMA_HOST": llm.url,
            "OLLAMA_MODEL": MODEL,
            "LLM_CONNECT_TIMEOUT_SECONDS": "1",
            "LLM_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT),
            "LOGIN_SLEEP_TIME": "2",
        },
        log_path=work / "app.log",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page(app: AppServer, chromium: Any) -> Iterator[Any]:
    """One signed-in tab for the whole module (each test starts a new chat)."""
    context = b.new_context(chromium)
    tab = b.open_page(context, app.url)
    b.log_in(tab, USER, PASSWORD)
    yield tab
    context.close()


@pytest.fixture
def chat(
    page: Any, llm: FakeOllamaProcess, own_redis: RedisServer, own_pg: PostgresServer
) -> Iterator[Chat]:
    """A new chat on a healthy system; every server is healthy again after the test."""
    llm.script(reply=REPLY, delay=0.01)
    yield Chat(page, own_redis, own_pg)
    own_redis.client().config_set("maxmemory", 0) if _answers(own_redis) else own_redis.start()
    if own_pg.pid() is None or not _pg_answers(own_pg):
        own_pg.start()
    if llm._proc is None:
        llm.start()
    llm.script(reply=REPLY, delay=0.01)


def _answers(server: RedisServer) -> bool:
    try:
        return bool(server.client().ping())
    except redis.ConnectionError:
        return False


def _pg_answers(server: PostgresServer) -> bool:
    try:
        server.wait_ready(timeout=0.5)
        return True
    except Exception:
        return False


@dataclass
class Chat:
    page: Any
    redis_server: RedisServer
    pg: PostgresServer

    def __post_init__(self) -> None:
        b.click_and_settle(self.page, self.page.get_by_role("button", name="New chat"))

    def ask(self, prompt: str) -> None:
        b.ask(self.page, prompt)
        self.page.wait_for_timeout(200)
        b.idle(self.page)

    def start_asking(self, prompt: str, *, until_text: int = 1) -> None:
        """Send the prompt and return once the NEW reply shows ``until_text`` characters."""
        replies = self.page.locator(f"{b.MESSAGE}:has([data-testid=stChatMessageAvatarAssistant])")
        before = replies.count()
        b.ask(self.page, prompt)
        deadline = time.monotonic() + 15
        while replies.count() <= before or len(b.last_reply_text(self.page)) < until_text:
            assert time.monotonic() < deadline, "the reply never started"
            time.sleep(0.02)  # polling the page

    @property
    def session_id(self) -> uuid.UUID:
        match = re.search(r"[?&]session=([0-9a-f-]{36})", self.page.url)
        assert match, self.page.url
        return uuid.UUID(match.group(1))

    def stored(self) -> list[tuple[str, str, str]]:
        """(role, content, status) of every message Redis holds for this session."""
        import json

        raw = self.redis_server.client().lrange(f"session:{self.session_id}", 0, -1)
        return [
            (m["role"], m["content"], m.get("status", "complete")) for m in map(json.loads, raw)
        ]

    def row(self) -> dict[str, Any] | None:
        """The session's row in PostgreSQL, and its usage rows."""
        with create_engine(self.pg.url).connect() as conn:
            found = conn.execute(
                text("SELECT message_count, title FROM conversation_sessions WHERE id = :id"),
                {"id": self.session_id},
            ).first()
            calls = conn.execute(
                text("SELECT outcome FROM llm_calls WHERE session_id = :id ORDER BY created_at"),
                {"id": self.session_id},
            ).scalars()
            return None if found is None else {
                "message_count": found[0], "title": found[1], "calls": list(calls)
            }  # fmt: skip

    def shown(self) -> list[str]:
        return [" ".join(t.split()) for t in self.page.locator(b.MESSAGE).all_inner_texts()]

    def errors(self) -> str:
        return " ".join(self.page.locator(b.ERROR).all_inner_texts())

    def warnings(self) -> str:
        return " ".join(self.page.locator(b.WARNING).all_inner_texts())

    def reload(self) -> None:
        self.page.reload()
        b.idle(self.page)

    def offered(self) -> list[str]:
        """Texts the storage-error page offers back to copy (unsent prompt, unsaved replies)."""
        return [t.strip() for t in self.page.locator("[data-testid=stCode]").all_inner_texts()]

    def comes_back(self, within: float = 15.0) -> None:
        """The error page turns back into the chat by itself once the store answers."""
        self.page.locator(b.CHAT_INPUT).wait_for(timeout=within * 1000)
        b.idle(self.page, hold=1.0)  # and the reruns that follow (the cookie component's)
        assert self.errors() == ""

    def send_unsent(self) -> None:
        b.click_and_settle(self.page, self.page.get_by_role("button", name="Send it now"))


# --- Redis ---------------------------------------------------------------------------------


def test_redis_stopped_between_turns_is_explained_and_the_chat_goes_on_once_it_is_back(
    chat: Chat,
) -> None:
    chat.ask("What is net debt?")
    before = chat.stored()
    assert [m[:2] for m in before] == [("user", "What is net debt?"), ("assistant", REPLY)]

    chat.redis_server.stop()
    chat.ask("And net debt to EBITDA?")
    assert "cannot reach its storage" in chat.errors() and "Redis" in chat.errors()
    assert chat.offered() == ["And net debt to EBITDA?"]  # the prompt is not lost

    chat.redis_server.start()  # same port, same append-only file; the app is not restarted
    chat.comes_back()  # by itself, without a reload
    assert len(chat.shown()) == 2
    chat.send_unsent()
    after = chat.stored()
    assert after[:2] == before  # nothing acknowledged was lost
    assert [m[:2] for m in after[2:]] == [("user", "And net debt to EBITDA?"), ("assistant", REPLY)]
    assert chat.row()["message_count"] == 4  # type: ignore[index]


def test_a_reply_streamed_while_redis_went_down_is_saved_when_redis_is_back(
    chat: Chat, llm: FakeOllamaProcess
) -> None:
    chat.ask("What is net debt?")
    before = chat.stored()
    llm.script(reply=REPLY, delay=0.08)
    chat.start_asking("Why divide by EBITDA?", until_text=10)
    chat.redis_server.stop()
    b.idle(chat.page)
    if chat.errors():
        # A rerun met Redis down before we looked (the login cookie component reports back
        # now and then, which reruns the page and ends the reply's run): the storage error
        # page holds what the reply had reached instead.
        (kept,) = chat.offered()
        assert kept and REPLY.startswith(kept)
        unsent = None
    else:
        kept = REPLY
        assert REPLY in chat.shown()[-1]  # the whole reply is on screen
        assert "The reply was not saved" in chat.warnings()
        assert "saves it as soon as the store answers again" in chat.warnings()
        unsent = "Thanks. And interest cover?"
        chat.ask(unsent)  # Redis still down: the page says why
        assert "cannot reach its storage" in chat.errors()
        assert chat.offered() == [unsent, REPLY]

    chat.redis_server.start()
    chat.comes_back()
    after = chat.stored()
    assert after[:2] == before
    assert [m[:2] for m in after[2:]] == [
        ("user", "Why divide by EBITDA?"),  # acknowledged before the stream
        ("assistant", kept),  # saved when Redis came back
    ]
    assert chat.row()["message_count"] == 4  # type: ignore[index]
    if unsent:
        chat.send_unsent()
        assert [m[:2] for m in chat.stored()[4:]] == [("user", unsent), ("assistant", REPLY)]


# --- PostgreSQL ----------------------------------------------------------------------------


def test_a_postgresql_restart_between_turns_costs_the_analyst_nothing(chat: Chat) -> None:
    chat.ask("What is net debt?")
    chat.pg.restart()  # every pooled connection of the app is now dead
    chat.ask("And gearing?")
    assert chat.errors() == "" and chat.warnings() == ""
    assert [m[:2] for m in chat.stored()] == [
        ("user", "What is net debt?"), ("assistant", REPLY),
        ("user", "And gearing?"), ("assistant", REPLY),
    ]  # fmt: skip
    assert chat.row() == {"message_count": 4, "title": "What is net debt?", "calls": ["ok", "ok"]}


def test_postgresql_down_is_explained_and_the_chat_goes_on_once_it_is_back(chat: Chat) -> None:
    chat.ask("What is net debt?")
    chat.pg.stop()
    chat.ask("And gearing?")
    assert "cannot reach its storage" in chat.errors() and "PostgreSQL" in chat.errors()
    assert chat.offered() == ["And gearing?"]

    chat.pg.start()
    chat.comes_back()
    assert len(chat.shown()) == 2
    chat.send_unsent()
    assert [m[:2] for m in chat.stored()][2:] == [("user", "And gearing?"), ("assistant", REPLY)]
    assert chat.row()["message_count"] == 4  # type: ignore[index]


def test_postgresql_crashing_while_a_reply_streams_keeps_the_reply_and_later_its_usage(
    chat: Chat, llm: FakeOllamaProcess
) -> None:
    llm.script(reply=REPLY, delay=0.08)
    chat.start_asking("What is net debt?", until_text=10)
    chat.pg.stop("immediate")  # a crash, mid-reply
    b.idle(chat.page)
    assert "usage record could not be written" in chat.warnings()
    assert "the reply itself is saved" in chat.warnings()
    assert [m[:2] for m in chat.stored()] == [("user", "What is net debt?"), ("assistant", REPLY)]

    chat.pg.start()
    chat.ask("And gearing?")  # the first click after the restart writes what was missing
    assert chat.row() == {
        "message_count": 4, "title": "What is net debt?", "calls": ["ok", "ok"]
    }  # fmt: skip


# --- the LLM server ------------------------------------------------------------------------


def test_an_llm_server_that_dies_mid_reply_is_reported_and_the_partial_reply_kept(
    chat: Chat, llm: FakeOllamaProcess
) -> None:
    llm.script(reply=REPLY, delay=0.08)
    chat.start_asking("What is net debt?", until_text=20)
    llm.kill()  # SIGKILL: the kernel closes its sockets mid-stream
    b.idle(chat.page)
    partial = b.last_reply_text(chat.page)
    assert 20 <= len(partial) < len(REPLY)
    assert "Reply failed" in chat.errors()
    stored = chat.stored()
    assert stored[1][0] == "assistant" and stored[1][2] == "error"
    assert stored[1][1] == partial  # what was shown is what was kept

    llm.start()  # same port; the app is not restarted
    llm.script(reply=REPLY, delay=0.01)
    chat.ask("Try again please.")
    assert [m[:2] for m in chat.stored()][2:] == [
        ("user", "Try again please."),
        ("assistant", REPLY),
    ]
    assert chat.row()["calls"] == ["error", "ok"]  # type: ignore[index]


@pytest.mark.parametrize("after", [0, 3], ids=["before-the-first-word", "mid-reply"])
def test_a_hanging_llm_server_times_out_as_configured(
    chat: Chat, llm: FakeOllamaProcess, after: int
) -> None:
    llm.script(reply=REPLY, delay=0.01, failure="hang", after=after)
    started = time.monotonic()
    chat.ask("What is net debt?")
    waited = time.monotonic() - started
    assert f"sent nothing for {READ_TIMEOUT:g} s" in chat.errors()
    assert READ_TIMEOUT <= waited < READ_TIMEOUT + 4, waited
    stored = chat.stored()
    assert stored[0][:2] == ("user", "What is net debt?")
    assert stored[1][2] == "error"

    llm.script(reply=REPLY, delay=0.01)
    chat.ask("Try again please.")
    assert chat.stored()[3][:2] == ("assistant", REPLY)


# --- a store that refuses writes -----------------------------------------------------------


def test_redis_out_of_memory_refuses_the_prompt_clearly_and_offers_it_back(chat: Chat) -> None:
    chat.ask("What is net debt?")
    before = chat.stored()
    chat.redis_server.client().config_set("maxmemory", 1)  # every write is now refused (OOM)
    chat.ask("And gearing?")
    assert "refused to store it: it is out of memory" in chat.errors()
    chat.page.get_by_text("Your prompt (not sent)").click()
    assert chat.page.locator("[data-testid=stCode]").inner_text() == "And gearing?"  # to copy
    assert chat.stored() == before

    chat.redis_server.client().config_set("maxmemory", 0)
    chat.ask("And gearing?")
    assert chat.stored()[:2] == before
    assert [m[:2] for m in chat.stored()[2:]] == [("user", "And gearing?"), ("assistant", REPLY)]
