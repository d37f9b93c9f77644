"""``python -m core chat`` driven through stdin, against a fake Ollama and the test stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import accounts, history, sessions
from core.models import ConversationSession, LlmCall
from tests.support.fake_ollama import FakeOllama

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


def test_a_failed_reply_prints_one_error_line_and_the_chat_goes_on(
    ana: uuid.UUID, ollama_env: FakeOllama, dbs: Session
) -> None:
    ollama_env.script(reply=["Half", " an", " answer"], failure="drop", after=2)
    done = run("Explain WACC\n/quit\n", "--new", "-u", "ana")
    assert done.returncode == 0
    assert "ledger> Half an" in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "dropped before the reply was complete" in errors[0]
    dbs.expire_all()
    assert [c.outcome for c in dbs.scalars(select(LlmCall))] == ["error"]


def test_ctrl_c_mid_reply_keeps_the_partial_reply(
    ana: uuid.UUID, ollama_env: FakeOllama, dbs: Session, r: redis.Redis
) -> None:
    # The server sends 20 words and then nothing: the reply cannot end before Ctrl-C, however
    # slowly this machine runs the test.
    ollama_env.script(chunks=20, delay=0.01, failure="hang", after=20)
    proc = subprocess.Popen(
        cli("--new", "-u", "ana"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        # A background CI job inherits SIGINT as ignored, and Python then never turns it into
        # KeyboardInterrupt: give the client the default a person at a terminal has.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("Tell me everything about bonds\n")
    proc.stdin.flush()
    seen = ""
    deadline = time.monotonic() + 30
    while "word word word" not in seen and time.monotonic() < deadline:
        seen += proc.stdout.read(1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate("/quit\n", timeout=30)
    assert proc.returncode == 0, err
    assert "[stopped: the partial reply is saved]" in seen + out
    reply = history.read_all(r, session_id=only_session(dbs).id)[1]
    assert reply["status"] == "interrupted"
    assert reply["content"].startswith("word word word") and len(reply["content"]) <= 20 * 5
    dbs.expire_all()
    assert [c.outcome for c in dbs.scalars(select(LlmCall))] == ["cancelled"]
