"""Faults injected into real servers while an analyst chats in a real browser.

The app (`streamlit run`, one process for the module) uses servers this module owns and
breaks on purpose: a redis-server (append-only file synced every second, as production runs
it; its disk can be filled for real, see tests/support/redis_server.py), a PostgreSQL 16 on a
TCP port, and a fake Ollama server in a process of its own (so it can be SIGKILLed mid-reply,
held at a known chunk, or replaced by a port that answers no connection). LLM timeouts are
small and the tests hold the app to them. For each fault: the page says clearly what is
wrong, the app recovers when the service is back WITHOUT being restarted, and no message the
app acknowledged is lost (messages are counted in Redis and PostgreSQL before and after).
docs/faults.md tabulates these scenarios.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, text

from core import accounts, database, migrate
from tests.support import browser as b
from tests.support.app_server import AppServer
from tests.support.fake_ollama import FakeOllamaProcess
from tests.support.pg_server import PostgresServer
from tests.support.redis_server import RedisServer

USER, PASSWORD = "fay.analyst", "faults are facts of life"
MODEL = "llama3.2:3b"
SECOND = "qwen2.5:7b"  # the model a comparison answers with besides MODEL
CONNECT_TIMEOUT = 1.0  # LLM_CONNECT_TIMEOUT_SECONDS for the app
READ_TIMEOUT = 1.5  # LLM_READ_TIMEOUT_SECONDS for the app: a silent server fails this fast
HELD = 5  # chunks of REPLY sent before a held reply waits (for less than READ_TIMEOUT)
REPLY = (
    "Net debt is total borrowings minus cash and equivalents; divide it by EBITDA to see how "
    "many years of operating profit would repay it."
)


# --- the servers and the app ---------------------------------------------------------------


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(
        tmp_path_factory.mktemp("fault-redis"), persistent=True, appendfsync="everysec"
    )
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
    with database.session_scope(server.url) as session:
        accounts.create_user(
            session, username=USER, email="fay@example.com", display_name="Fay", password=PASSWORD
        )
    yield server
    database.reset()
    server.destroy()


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOllamaProcess]:
    server = FakeOllamaProcess(models=[MODEL, SECOND]).start()
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
            "LLM_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT),
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
    if _answers(own_redis):
        own_redis.free_disk()
        own_redis.client().config_set("maxmemory", 0)
    else:
        own_redis.start()
    if own_pg.pid() is None or not _pg_answers(own_pg):
        own_pg.start()
    if llm._proc is None:
        llm.start()
    llm.script(reply=REPLY, delay=0.01)


def _chunks(reply: str) -> list[str]:
    """The chunks the fake server streams for ``reply`` (words, each with its leading space)."""
    words = reply.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _answers(server: RedisServer) -> bool:
    try:
        return bool(server.client().ping())
    except redis.ConnectionError:
        return False
    except redis.ResponseError:  # MISCONF: it answers, but refuses writes (and PING)
        return True


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

    def break_mid_reply(
        self, llm: FakeOllamaProcess, prompt: str, fault: Callable[[], object]
    ) -> None:
        """Send ``prompt``; once the prompt is stored and HELD chunks of the reply have been
        sent, ``fault()`` breaks something; then the rest of the reply is let go (when the
        server still runs) and the page settles."""
        llm.script(reply=REPLY, delay=0.01, hold=HELD)
        self.start_asking(prompt)
        llm.wait_held()
        fault()
        if llm._proc is not None:
            llm.release()
        b.idle(self.page)

    @property
    def session_id(self) -> uuid.UUID:
        match = re.search(r"[?&]session=([0-9a-f-]{36})", self.page.url)
        assert match, self.page.url
        return uuid.UUID(match.group(1))

    def stored(self, sid: uuid.UUID | None = None) -> list[tuple[str, str, str]]:
        """(role, content, status) of every message Redis holds for this session (or ``sid``)."""
        import json

        raw = self.redis_server.client().lrange(f"session:{sid or self.session_id}", 0, -1)
        return [
            (m["role"], m["content"], m.get("status", "complete")) for m in map(json.loads, raw)
        ]

    def counts(self) -> tuple[int, int]:
        """(messages in Redis, message_count in PostgreSQL) for this session."""
        row = self.row()
        return len(self.stored()), -1 if row is None else int(row["message_count"])

    def row(self, sid: uuid.UUID | None = None) -> dict[str, Any] | None:
        """The session's row in PostgreSQL (or ``sid``'s), and its usage rows."""
        sid = sid or self.session_id
        with create_engine(self.pg.url).connect() as conn:
            found = conn.execute(
                text("SELECT message_count, title FROM conversation_sessions WHERE id = :id"),
                {"id": sid},
            ).first()
            calls = conn.execute(
                text("SELECT outcome FROM llm_calls WHERE session_id = :id ORDER BY created_at"),
                {"id": sid},
            ).scalars()
            return None if found is None else {
                "message_count": found[0], "title": found[1], "calls": list(calls)
            }  # fmt: skip

    def stored_once_replied(self, sid: uuid.UUID, within: float = 15.0) -> list[Any]:
        """The session's messages once its reply is stored (by a run this page no longer
        shows)."""
        deadline = time.monotonic() + within
        while len(stored := self.stored(sid)) < 2:
            assert time.monotonic() < deadline, f"no reply was stored: {stored}"
            time.sleep(0.05)  # polling Redis
        return stored

    def row_once_counted(self, sid: uuid.UUID, messages: int, within: float = 15.0) -> Any:
        """The session's row once it counts ``messages``: a turn stores its reply in Redis
        first, then its usage row and counts in PostgreSQL."""
        deadline = time.monotonic() + within
        while (row := self.row(sid)) is None or row["message_count"] < messages:
            if time.monotonic() > deadline:
                return row
            time.sleep(0.05)  # polling PostgreSQL
        return row

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
    assert chat.counts() == (2, 2)
    # The rest of the reply arrives with Redis down.
    chat.break_mid_reply(llm, "Why divide by EBITDA?", chat.redis_server.stop)
    assert REPLY in chat.shown()[-1]  # the whole reply is on screen
    warning = chat.warnings()
    assert "Redis is not reachable at" in warning and "The reply was not saved" in warning
    assert "saves it as soon as the store answers again" in warning
    assert chat.row()["message_count"] == 3  # type: ignore[index]  # the prompt, counted
    unsent = "Thanks. And interest cover?"
    chat.ask(unsent)  # Redis still down: the page says why, and holds both texts
    assert "cannot reach its storage" in chat.errors()
    assert chat.offered() == [unsent, REPLY]

    chat.redis_server.start()
    chat.comes_back()
    after = chat.stored()
    assert after[:2] == before
    assert [m[:2] for m in after[2:]] == [
        ("user", "Why divide by EBITDA?"),  # acknowledged before the stream
        ("assistant", REPLY),  # saved when Redis came back
    ]
    assert chat.counts() == (4, 4)
    chat.send_unsent()
    assert [m[:2] for m in chat.stored()[4:]] == [("user", unsent), ("assistant", REPLY)]
    assert chat.counts() == (6, 6)


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
    chat.ask("What is net debt?")
    before = chat.stored()
    # SIGKILL: the kernel closes the server's sockets mid-stream.
    chat.break_mid_reply(llm, "And net debt to EBITDA?", llm.kill)
    partial = "".join(_chunks(REPLY)[:HELD])
    assert b.last_reply_text(chat.page) == partial  # what had arrived stays on screen
    assert "Reply failed: The connection to Ollama at" in chat.errors()
    assert "dropped before the reply was complete" in chat.errors()
    broken = chat.stored()
    assert broken == [
        *before,
        ("user", "And net debt to EBITDA?", "complete"),
        ("assistant", partial, "error"),  # what was shown is what was kept
    ]
    assert chat.counts() == (4, 4)

    llm.start()  # same port; the app is not restarted
    llm.script(reply=REPLY, delay=0.01)
    chat.ask("Try again please.")
    assert chat.stored()[:4] == broken
    assert [m[:2] for m in chat.stored()[4:]] == [
        ("user", "Try again please."),
        ("assistant", REPLY),
    ]
    assert chat.counts() == (6, 6)
    assert chat.row()["calls"] == ["ok", "error", "ok"]  # type: ignore[index]


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
    partial = "".join(_chunks(REPLY)[:after])
    assert b.last_reply_text(chat.page) == partial  # '' when nothing came
    assert chat.stored() == [
        ("user", "What is net debt?", "complete"),
        ("assistant", partial, "error"),
    ]
    assert chat.counts() == (2, 2)
    assert chat.row()["calls"] == ["error"]  # type: ignore[index]

    llm.script(reply=REPLY, delay=0.01)
    chat.ask("Try again please.")
    assert chat.stored()[3][:2] == ("assistant", REPLY)
    assert chat.counts() == (4, 4)


def test_an_llm_server_that_accepts_no_connection_is_reported_unreachable(
    chat: Chat, llm: FakeOllamaProcess
) -> None:
    chat.ask("What is net debt?")
    with llm.unanswering():  # its port listens, but its backlog is full: SYNs go unanswered
        started = time.monotonic()
        chat.ask("And net debt to EBITDA?")
        waited = time.monotonic() - started
        assert "Reply failed: Ollama is not reachable at" in chat.errors()
        assert "no connection within the connect timeout" in chat.errors()
        # Bounded by the connect timeout (the reply's connection, and the sidebar's model
        # list when it is due to be asked again), not by the kernel's SYN retries (minutes).
        assert CONNECT_TIMEOUT <= waited < 2 * CONNECT_TIMEOUT + 6, waited
        assert chat.stored()[2:] == [
            ("user", "And net debt to EBITDA?", "complete"),
            ("assistant", "", "error"),
        ]
        assert chat.counts() == (4, 4)

    llm.script(reply=REPLY, delay=0.01)  # the server is back on the same port
    chat.ask("Try again please.")
    assert chat.stored()[4:] == [
        ("user", "Try again please.", "complete"),
        ("assistant", REPLY, "complete"),
    ]
    assert chat.row()["calls"] == ["ok", "error", "ok"]  # type: ignore[index]


# --- a store that refuses writes -----------------------------------------------------------


def test_redis_out_of_memory_refuses_the_prompt_clearly_and_offers_it_back(chat: Chat) -> None:
    chat.ask("What is net debt?")
    before = chat.stored()
    chat.redis_server.client().config_set("maxmemory", 1)  # every write is now refused (OOM)
    chat.ask("And gearing?")
    assert "refused to store it: it is out of memory" in chat.errors()
    chat.page.get_by_text("Your prompt (not sent)").click()
    assert chat.page.locator("[data-testid=stCode]").inner_text() == "And gearing?"  # to copy
    assert chat.stored() == before and chat.counts() == (2, 2)  # nothing half-written

    chat.redis_server.client().config_set("maxmemory", 0)
    chat.ask("And gearing?")
    assert chat.stored()[:2] == before
    assert [m[:2] for m in chat.stored()[2:]] == [("user", "And gearing?"), ("assistant", REPLY)]
    assert chat.counts() == (4, 4)


def test_redis_unable_to_write_its_full_disk_is_explained_and_the_prompt_sent_once_freed(
    chat: Chat,
) -> None:
    chat.ask("What is net debt?")
    before = chat.stored()
    answer = chat.redis_server.fill_disk()  # its append-only file can grow no more
    # Redis 6.2's answer to every write, and to PING too (so the app's storage check sees it).
    assert answer == "MISCONF Errors writing to the AOF file: No space left on device"
    chat.ask("And gearing?")
    # Said as what it is: Redis answers but refuses to store (not "start the service").
    assert "refuses to store anything" in chat.errors()
    assert "cannot reach its storage" not in chat.errors()
    assert "it cannot write to its disk" in chat.errors() and "free disk space" in chat.errors()
    assert f"Redis says: {answer}" in chat.errors()  # the reason, in Redis's own words too
    assert chat.offered() == ["And gearing?"]  # the prompt is not lost
    assert chat.stored() == before and chat.counts() == (2, 2)  # nothing half-written

    chat.redis_server.free_disk()  # on the running server; the app is not restarted
    chat.comes_back()
    chat.send_unsent()
    assert chat.errors() == ""
    assert chat.stored()[:2] == before
    assert [m[:2] for m in chat.stored()[2:]] == [("user", "And gearing?"), ("assistant", REPLY)]
    assert chat.counts() == (4, 4)


def test_a_reply_redis_cannot_write_to_its_full_disk_is_kept_and_saved_once_freed(
    chat: Chat, llm: FakeOllamaProcess
) -> None:
    chat.ask("What is net debt?")
    before = chat.stored()
    chat.break_mid_reply(llm, "Why divide by EBITDA?", chat.redis_server.fill_disk)
    assert REPLY in chat.shown()[-1]  # the whole reply stays on screen
    warning = chat.warnings()
    assert "refused to store it: it cannot write to its disk" in warning
    assert "The reply was not saved" in warning
    assert "saves it as soon as the store answers again" in warning
    prompt = ("user", "Why divide by EBITDA?", "complete")
    assert chat.stored() == [*before, prompt]
    assert chat.counts() == (3, 3)  # the acknowledged prompt is stored and counted
    unsent = "And interest cover?"
    chat.ask(unsent)  # the disk is still full: the page says why, and holds both texts
    assert "refuses to store anything" in chat.errors() and "MISCONF" in chat.errors()
    assert chat.offered() == [unsent, REPLY]

    chat.redis_server.free_disk()
    chat.comes_back()  # and saves the reply it held
    assert chat.stored() == [*before, prompt, ("assistant", REPLY, "complete")]
    assert chat.counts() == (4, 4)
    chat.send_unsent()
    assert [m[:2] for m in chat.stored()[4:]] == [("user", unsent), ("assistant", REPLY)]
    assert chat.counts() == (6, 6)


# --- the analyst stops the reply, or leaves ------------------------------------------------


def test_stop_reply_keeps_the_partial_reply_marked_interrupted(
    chat: Chat, llm: FakeOllamaProcess
) -> None:
    llm.script(reply=REPLY, delay=0.08)  # about 2 s of streaming
    chat.start_asking("What is net debt?", until_text=20)
    b.click_and_settle(chat.page, chat.page.get_by_role("button", name="Stop reply"))
    (question, answer) = chat.stored()
    assert question[:2] == ("user", "What is net debt?")
    role, partial, status = answer
    assert (role, status) == ("assistant", "interrupted")
    assert 20 <= len(partial) < len(REPLY) and REPLY.startswith(partial)
    assert b.page_messages(chat.page)[-1] == partial  # the text so far stays in the page
    stopped = "Reply stopped before the end"
    assert stopped in chat.warnings()
    assert chat.page.get_by_role("button", name="Stop reply").count() == 0

    chat.reload()
    assert b.page_messages(chat.page) == ["What is net debt?", partial]
    assert stopped in chat.warnings()  # marked, from history
    assert chat.counts() == (2, 2)
    assert chat.row()["calls"] == ["cancelled"]  # type: ignore[index]


COLUMNS_JS = """() => {
  const msgs = [...document.querySelectorAll('[data-testid=stChatMessage]')];
  const last = msgs[msgs.length - 1];
  return last ? [...last.querySelectorAll('[data-testid=stColumn]')].map(c => c.innerText) : [];
}"""


def test_stop_during_a_comparison_keeps_both_partial_replies_side_by_side(
    chat: Chat, llm: FakeOllamaProcess
) -> None:
    llm.script(reply=REPLY, delay=0.08)  # about 2 s of streaming, for each model
    switch = chat.page.get_by_text("Compare two models")
    b.click_and_settle(chat.page, switch)
    try:
        b.ask(chat.page, "What is net debt?")
        deadline = time.monotonic() + 15
        # Both columns grow at the same time: neither waits for the other to end.
        while not (
            len(cols := chat.page.evaluate(COLUMNS_JS)) == 2
            and all(len(c) > len(m) + 20 for c, m in zip(cols, (MODEL, SECOND), strict=True))
        ):
            assert time.monotonic() < deadline, f"the two replies did not stream: {cols}"
            time.sleep(0.02)  # polling the page
        b.click_and_settle(chat.page, chat.page.get_by_role("button", name="Stop reply"))
        question, *answers = chat.stored()
        assert question[:2] == ("user", "What is net debt?")
        assert [status for _, _, status in answers] == ["interrupted", "interrupted"]
        assert all(REPLY.startswith(text) and len(text) < len(REPLY) for _, text, _ in answers)
        assert chat.counts() == (3, 3)
        assert chat.row()["calls"] == ["cancelled", "cancelled"]  # type: ignore[index]
        chat.reload()
        cols = chat.page.evaluate(COLUMNS_JS)
        assert [c.splitlines()[0] for c in cols] == [
            f"Version 1 of 2 · {MODEL}",
            f"Version 2 of 2 · {SECOND}",
        ]
    finally:  # the tab is shared: one model again (a reload has already reset the switch)
        if chat.page.get_by_role("switch", name="Compare two models").is_checked():
            b.click_and_settle(chat.page, switch)


def test_leaving_for_another_page_mid_reply_saves_the_partial_reply(
    chat: Chat, llm: FakeOllamaProcess
) -> None:
    llm.script(reply=REPLY, delay=0.08)
    chat.start_asking("What is net debt?", until_text=20)
    sid = chat.session_id
    b.go(chat.page, "Usage")
    try:
        (question, answer) = chat.stored_once_replied(sid)
        assert question[:2] == ("user", "What is net debt?")
        role, partial, status = answer
        assert (role, status) == ("assistant", "interrupted")
        assert 20 <= len(partial) < len(REPLY) and REPLY.startswith(partial)
        row = chat.row_once_counted(sid, 2)
        assert row is not None and (row["message_count"], row["calls"]) == (2, ["cancelled"])
    finally:
        b.go(chat.page, "Chat")


def test_closing_the_tab_mid_reply_saves_the_partial_reply(
    chat: Chat, llm: FakeOllamaProcess
) -> None:
    llm.script(reply=REPLY, delay=0.08)
    tab = chat.page.context.new_page()  # the same login, in a second tab
    tab.goto(chat.page.url.split("?")[0])
    b.idle(tab)
    other = Chat(tab, chat.redis_server, chat.pg)
    other.start_asking("What is net debt?", until_text=20)
    sid = other.session_id
    tab.close()
    (question, answer) = chat.stored_once_replied(sid)
    assert question[:2] == ("user", "What is net debt?")
    role, partial, status = answer
    assert (role, status) == ("assistant", "interrupted")  # the closed tab ended the run
    assert 20 <= len(partial) < len(REPLY) and REPLY.startswith(partial)
    row = chat.row_once_counted(sid, 2)
    assert row is not None and (row["message_count"], row["calls"]) == (2, ["cancelled"])
