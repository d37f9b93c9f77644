"""``python -m core chat`` driven through stdin, against a fake Ollama and the test stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
import redis
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from core import accounts, history, migrate, sessions
from core.models import ConversationSession
from tests.support.chat_failures import LLM_FAILURES, LLMFailure, says_all
from tests.support.fake_ollama import FakeOllama
from tests.support.pg_server import PostgresServer
from tests.support.redis_server import RedisServer
from tests.support.state import calls

PASSWORD = "correct horse battery"


@pytest.fixture
def ana(dbs: Session, r: redis.Redis, ollama_env: FakeOllama) -> uuid.UUID:
    user = accounts.create_user(
        dbs, username="ana", email="ana@example.com", display_name="Ana", password=PASSWORD
    )
    dbs.commit()
    return user.id


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "core", "chat", *args]


def env(password: str = PASSWORD) -> dict[str, str]:
    return {**os.environ, "LEDGER_PASSWORD": password, "PYTHONUNBUFFERED": "1"}


def run(stdin: str, *args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(*args),
        input=stdin,
        capture_output=True,
        text=True,
        env=env(password),
        timeout=60,
    )


def only_session(dbs: Session) -> ConversationSession:
    dbs.expire_all()
    (row,) = dbs.scalars(select(ConversationSession))
    return row


def outcomes(dbs: Session) -> list[str]:
    return [c.outcome for c in calls(dbs)]


class Terminal:
    """The client as a person at a terminal drives it: type a line, wait for what it prints,
    press Ctrl-C. Output is read on threads, so a wait gives up after ``timeout`` seconds
    instead of blocking on a pipe."""

    def __init__(self, *args: str, timeout: float = 30) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen(
            cli(*args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
            # A background CI job inherits SIGINT as ignored, and Python then never turns it
            # into KeyboardInterrupt: give the client the default a person at a terminal has.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self._text = {"out": "", "err": ""}
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(name, pipe), daemon=True)
            for name, pipe in (("out", self.proc.stdout), ("err", self.proc.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, pipe: IO[str] | None) -> None:
        assert pipe is not None
        while char := pipe.read(1):
            with self._changed:
                self._text[name] += char
                self._changed.notify_all()

    @property
    def out(self) -> str:
        return self._text["out"]

    @property
    def err(self) -> str:
        return self._text["err"]

    def wait_for(self, text: str, *, times: int = 1, stream: str = "out") -> None:
        with self._changed:
            done = self._changed.wait_for(
                lambda: self._text[stream].count(text) >= times, timeout=self.timeout
            )
        assert done, f"never printed {text!r} (x{times}); out={self.out!r} err={self.err!r}"

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def ctrl_c(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def leave(self) -> int:
        """Type /quit and wait for the client to end; its exit code."""
        self.type("/quit")
        code = self.proc.wait(self.timeout)
        for reader in self._readers:
            reader.join(self.timeout)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    started: list[Terminal] = []

    def start(*args: str) -> Terminal:
        started.append(Terminal(*args))
        return started[-1]

    yield start
    for client in started:
        client.kill()


def test_a_terminal_chat_streams_replies_into_the_same_stores(
    ana: uuid.UUID, ollama_env: FakeOllama, dbs: Session, r: redis.Redis
) -> None:
    done = run("What is EBITDA?\n   \nAnd EBIT?\n/quit\n", "--username", "ana")
    assert done.returncode == 0, done.stderr
    assert "Signed in as Ana." in done.stdout
    assert done.stdout.count("ledger> Revenue is the top line.") == 2
    assert "[6 tokens · " in done.stdout and "first token" in done.stdout
    row = only_session(dbs)
    assert row.user_id == ana and row.title == "What is EBITDA?" and row.message_count == 4
    contents = [m["content"] for m in history.read_all(r, session_id=row.id)]
    assert contents == [
        "What is EBITDA?",
        "Revenue is the top line.",
        "And EBIT?",
        "Revenue is the top line.",
    ]


def test_an_existing_session_is_picked_by_number_and_continued(
    ana: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    row = sessions.create(dbs, user_id=ana, title="Bond maths")
    dbs.commit()
    history.append(r, session_id=row.id, message=history.make_message("user", "Duration?"))
    done = run("1\nConvexity?\n", "-u", "ana")  # EOF after the prompt ends the client
    assert done.returncode == 0, done.stderr
    assert "1. Bond maths" in done.stdout and "you> Duration?" in done.stdout
    assert [m["content"] for m in history.read_all(r, session_id=row.id)][-2:] == [
        "Convexity?",
        "Revenue is the top line.",
    ]


def test_wrong_password_prints_one_error_line(ana: uuid.UUID) -> None:
    done = run("", "--username", "ana", password="wrong password!!")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: Wrong username or password."


@pytest.mark.parametrize("failure", LLM_FAILURES)
def test_a_failed_reply_prints_one_error_line_keeps_the_prompt_and_the_chat_goes_on(
    ana: uuid.UUID,
    ollama_env: FakeOllama,
    dbs: Session,
    r: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    failure: LLMFailure,
) -> None:
    failure.bring_about(ollama_env, monkeypatch)
    done = run("Explain WACC\n/quit\n", "--new", "-u", "ana")
    assert done.returncode == 0, done.stderr
    assert f"ledger> {failure.partial}\n" in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and says_all(errors[0], failure), done.stderr
    assert "Traceback" not in done.stderr
    question, reply = history.read_all(r, session_id=only_session(dbs).id)
    assert question["content"] == "Explain WACC"
    assert reply["content"] == failure.partial and reply["status"] == "error"
    assert says_all(reply["error"], failure)
    assert outcomes(dbs) == ["error"]


def test_models_are_listed_and_switched_and_unknown_commands_stay_local(
    ana: uuid.UUID, ollama_env: FakeOllama, dbs: Session
) -> None:
    typed = "/models\n/model nope:1b\n/model qwen2.5:7b\n/ratios please\nWhat is EBITDA?\n/quit\n"
    done = run(typed, "--new", "-u", "ana")
    assert done.returncode == 0, done.stderr
    assert "  llama3.2:3b  (answering)\n  qwen2.5:7b\n" in done.stdout
    assert "nope:1b is not installed here. Installed: llama3.2:3b, qwen2.5:7b." in done.stdout
    assert "Answering with qwen2.5:7b from now on." in done.stdout
    assert "Unknown command /ratios (not sent to the model)." in done.stdout
    assert [m["model"] for m in ollama_env.requests] == ["qwen2.5:7b"]  # only the question
    assert [c.model for c in calls(dbs)] == ["qwen2.5:7b"]


def test_a_missing_configured_model_is_said_and_an_installed_one_answers(
    ana: uuid.UUID, ollama_env: FakeOllama
) -> None:
    ollama_env.models = ("qwen2.5:7b",)
    done = run("What is EBITDA?\n/quit\n", "--new", "-u", "ana")
    assert done.returncode == 0, done.stderr
    assert "The configured model llama3.2:3b is not installed" in done.stdout
    assert [m["model"] for m in ollama_env.requests] == ["qwen2.5:7b"]


def test_new_starts_another_chat(ana: uuid.UUID, dbs: Session, r: redis.Redis) -> None:
    done = run("What is EBITDA?\n/new\nWhat is a bond?\n/quit\n", "--new", "-u", "ana")
    assert done.returncode == 0, done.stderr
    assert "New chat." in done.stdout
    dbs.expire_all()
    rows = dbs.scalars(select(ConversationSession).order_by(ConversationSession.created_at))
    chats = [
        (row.title, [m["content"] for m in history.read_all(r, session_id=row.id)]) for row in rows
    ]
    assert chats == [
        ("What is EBITDA?", ["What is EBITDA?", "Revenue is the top line."]),
        ("What is a bond?", ["What is a bond?", "Revenue is the top line."]),
    ]


def test_session_option_continues_that_session_without_asking(
    ana: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    other = sessions.create(dbs, user_id=ana, title="Another chat")
    row = sessions.create(dbs, user_id=ana, title="Bond maths")
    dbs.commit()
    history.append(r, session_id=row.id, message=history.make_message("user", "Duration?"))
    history.append(r, session_id=row.id, message=history.make_message("assistant", "7 years."))
    done = run("Convexity?\n/quit\n", "--session", str(row.id), "-u", "ana")
    assert done.returncode == 0, done.stderr
    assert "Your sessions" not in done.stdout  # no list, no question
    assert "you> Duration?\nledger> 7 years.\n" in done.stdout
    assert [m["content"] for m in history.read_all(r, session_id=row.id)] == [
        "Duration?",
        "7 years.",
        "Convexity?",
        "Revenue is the top line.",
    ]
    assert history.count(r, session_id=other.id) == 0


def test_another_users_session_is_refused_like_an_unknown_one(
    ana: uuid.UUID, dbs: Session, r: redis.Redis
) -> None:
    bob = accounts.create_user(
        dbs, username="bob", email="bob@example.com", display_name="Bob", password=PASSWORD
    )
    theirs = sessions.create(dbs, user_id=bob.id, title="Bob's plans")
    dbs.commit()
    history.append(r, session_id=theirs.id, message=history.make_message("user", "secret"))
    for sid in (str(theirs.id), str(uuid.uuid4()), "not-a-uuid"):
        done = run("Show me\n", "--session", sid, "-u", "ana")
        assert (done.returncode, done.stderr.strip()) == (2, "error: Session not found."), sid
        assert "secret" not in done.stdout
    assert [m["content"] for m in history.read_all(r, session_id=theirs.id)] == ["secret"]


# --- a store down when a prompt is sent -------------------------------------------------------


@dataclass
class Store:
    """A server the client uses that the test can stop and start, and how to see what the
    client wrote into PostgreSQL and Redis meanwhile."""

    name: str  # as the error names it
    stop: Callable[[], None]
    start: Callable[[], None]
    sessions: Callable[[], int]  # session rows in the PostgreSQL the client uses
    keys: Callable[[], int]  # keys in the Redis the client uses


@pytest.fixture(params=["Redis", "PostgreSQL"])
def own_store(
    request: pytest.FixtureRequest,
    ana: uuid.UUID,
    dbs: Session,
    r: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Store]:
    """The client's Redis or PostgreSQL replaced by a server this test owns."""

    def test_sessions() -> int:
        dbs.expire_all()
        return int(dbs.scalar(select(func.count()).select_from(ConversationSession)) or 0)

    if request.param == "Redis":
        own_redis = RedisServer(tmp_path / "redis")
        own_redis.start()
        monkeypatch.setenv("REDIS_URL", own_redis.url)
        try:
            yield Store(
                "Redis",
                own_redis.stop,
                own_redis.start,
                test_sessions,
                lambda: int(own_redis.client().dbsize()),
            )
        finally:
            own_redis.stop()
        return
    own_pg = PostgresServer().init()
    own_pg.start()
    engine = create_engine(own_pg.url, poolclass=NullPool)  # no connection outlives a stop
    try:
        migrate.upgrade(engine)
        with sessionmaker(engine)() as s:
            accounts.create_user(
                s, username="ana", email="ana@example.com", display_name="Ana", password=PASSWORD
            )
            s.commit()

        def own_sessions() -> int:
            with sessionmaker(engine)() as s:
                return int(s.scalar(select(func.count()).select_from(ConversationSession)) or 0)

        monkeypatch.setenv("DATABASE_URL", own_pg.url)
        yield Store("PostgreSQL", own_pg.stop, own_pg.start, own_sessions, lambda: r.dbsize())
    finally:
        engine.dispose()
        own_pg.destroy()


def test_a_store_down_at_send_time_writes_nothing_and_enter_sends_the_prompt_again(
    own_store: Store, terminal: Callable[..., Terminal]
) -> None:
    client = terminal("--new", "-u", "ana")
    client.wait_for("you> ")  # signed in: PostgreSQL answered
    own_store.stop()
    client.type("What is a swap?")
    client.wait_for(f"error: {own_store.name} is not reachable at ", stream="err")
    client.wait_for("[not sent: press Enter on an empty line to send it again]")
    client.wait_for("you> ", times=2)
    assert len([line for line in client.err.splitlines() if line.startswith("error: ")]) == 1
    assert "ledger> " not in client.out  # the model was not asked

    own_store.start()
    assert (own_store.sessions(), own_store.keys()) == (0, 0)  # nothing half-written
    client.type("")  # Enter: the kept prompt is sent
    client.wait_for("ledger> Revenue is the top line.")
    assert client.leave() == 0, client.err
    assert (own_store.sessions(), own_store.keys()) == (1, 1)  # one session, one history list


@pytest.fixture
def stalled(
    ana: uuid.UUID,
    ollama_env: FakeOllama,
    terminal: Callable[..., Terminal],
    monkeypatch: pytest.MonkeyPatch,
) -> Terminal:
    """A client whose reply has sent three words and then nothing: the client waits far longer
    than the test, so the reply cannot end before Ctrl-C, however slowly this machine runs."""
    monkeypatch.setenv("LLM_READ_TIMEOUT_SECONDS", "300")
    ollama_env.script(chunks=20, failure="hang", after=3)
    client = terminal("--new", "-u", "ana")
    client.type("Tell me about bonds")
    client.wait_for("ledger> word word word")
    return client


def test_ctrl_c_mid_reply_keeps_the_partial_reply(
    stalled: Terminal, dbs: Session, r: redis.Redis
) -> None:
    stalled.ctrl_c()
    stalled.wait_for("[stopped: the partial reply is saved]")
    assert stalled.leave() == 0, stalled.err
    reply = history.read_all(r, session_id=only_session(dbs).id)[1]
    assert reply["status"] == "interrupted" and reply["content"] == "word word word "
    assert outcomes(dbs) == ["cancelled"]


def test_a_reply_redis_refused_is_saved_by_save_once_redis_takes_writes(
    private_redis: redis.Redis, stalled: Terminal, dbs: Session
) -> None:
    # The terminal client uses this test's own Redis: maxmemory is the server's setting.
    r = private_redis
    r.config_set("maxmemory", 1)  # the question is stored; from now on Redis refuses writes
    stalled.ctrl_c()
    stalled.wait_for("[stopped: the partial reply is kept]")
    stalled.wait_for("Ledger tries again before your next prompt", stream="err")
    assert "out of memory" in stalled.err and "The reply was not saved." in stalled.err
    stalled.wait_for("you> ", times=2)
    sid = only_session(dbs).id
    assert [m["role"] for m in history.read_all(r, session_id=sid)] == ["user"]

    r.config_set("maxmemory", 0)  # Redis takes writes again
    stalled.type("/save")
    stalled.wait_for("[saved 1 reply that could not be saved earlier]")
    assert stalled.leave() == 0, stalled.err
    assert "NOT saved" not in stalled.err
    _, reply = history.read_all(r, session_id=sid)
    assert reply["content"] == "word word word " and reply["status"] == "interrupted"
    assert only_session(dbs).message_count == 2 and outcomes(dbs) == ["cancelled"]


def test_a_reply_still_not_saved_on_leaving_is_printed_to_copy(
    private_redis: redis.Redis, stalled: Terminal
) -> None:
    private_redis.config_set("maxmemory", 1)  # this test's own Redis refuses writes from now
    stalled.ctrl_c()
    stalled.wait_for("you> ", times=2)
    assert stalled.leave() == 0
    assert "warning: this reply is NOT saved (" in stalled.err
    assert stalled.err.rstrip().endswith("copy it from here:\nword word word")


def test_again_answers_the_last_question_again_as_a_new_version(
    ana: uuid.UUID, ollama_env: FakeOllama, dbs: Session, r: redis.Redis
) -> None:
    typed = "/again\nWhat is EBITDA?\n/model qwen2.5:7b\n/again\n/quit\n"
    done = run(typed, "--new", "-u", "ana")
    assert done.returncode == 0, done.stderr
    assert "[nothing to answer again yet: ask a question first]" in done.stdout
    assert "[version 2 of the reply, from qwen2.5:7b]" in done.stdout
    saved = history.read_all(r, session_id=only_session(dbs).id)
    assert [(m["role"], m.get("version")) for m in saved] == [
        ("user", None),
        ("assistant", None),
        ("assistant", 2),
    ]
    assert [c.model for c in calls(dbs)] == ["llama3.2:3b", "qwen2.5:7b"]
