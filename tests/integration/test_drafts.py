"""A process killed mid-reply loses nothing: its reply so far waits in Redis as a draft, and
the next process to open the conversation saves it, marked, with its usage row; a draft whose
writer is alive is left alone, and a finished turn leaves none."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import access, chat, database, drafts, history, llm, sessions
from core.errors import LLMError
from core.models import LlmCall
from tests.support.fake_ollama import FakeOllama
from tests.support.people import identity

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys, uuid
from core import chat, database, drafts, llm, services
drafts.LEASE_SECONDS = 1
drafts.BEAT_SECONDS = 0.2
turn = chat.turn(database.get_sessionmaker(), services.redis_client(), llm.get_backend(),
                 user_id=uuid.UUID(sys.argv[1]), prompt="Explain EBITDA margins")
print(turn.session_id, flush=True)
for text in turn:
    pass
"""


def test_a_reply_cut_by_a_killed_process_is_saved_by_the_next_reader(
    dbs: Session, r: redis.Redis, ollama_env: FakeOllama
) -> None:
    ana = identity(dbs, "ana", commit=True)
    ollama_env.script(reply=[f"word{i} " for i in range(40)], delay=0.01, hold=12)
    env = {**os.environ, "LLM_READ_TIMEOUT_SECONDS": "30", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ana.id)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        sid = uuid.UUID(child.stdout.readline().strip())
        ollama_env.wait_held()
        deadline = time.monotonic() + 10
        while len(history_draft(r, sid)) < 12 * 6 and time.monotonic() < deadline:
            time.sleep(0.05)  # the child's thread writes the draft every 0.2 s
        # Alive: its lease is renewed, so nobody takes its draft.
        assert not drafts.recover(dbs, r, session_id=sid)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
        ollama_env.release()
    time.sleep(1.3)  # the lease (1 s in the child) runs out

    opened = access.open_session(dbs, r, viewer=ana, session_id=sid)
    prompt, reply = opened.messages
    assert prompt["content"] == "Explain EBITDA margins"
    assert reply["status"] == "interrupted" and reply["error"] == drafts.STOPPED
    assert reply["content"].startswith("word0 word1 ") and "word11" in reply["content"]
    assert not r.exists(drafts.draft_key(sid))
    call = dbs.scalars(select(LlmCall)).one()
    assert (call.outcome, call.error) == ("error", drafts.STOPPED)
    assert call.completion_tokens >= 12
    row = sessions.get_for_owner(dbs, user_id=ana.id, session_id=sid)
    assert row.message_count == 2
    # Opened again (another process, another tab): saved once.
    assert len(access.open_session(dbs, r, viewer=ana, session_id=sid).messages) == 2


def history_draft(r: redis.Redis, sid: uuid.UUID) -> str:
    import json

    raw = r.hget(drafts.draft_key(sid), "message")
    return json.loads(raw)["content"] if raw else ""


def test_a_finished_turn_leaves_no_draft(
    dbs: Session, r: redis.Redis, ollama_env: FakeOllama
) -> None:
    ana = identity(dbs, "ana", commit=True)
    current = chat.turn(
        database.get_sessionmaker(), r, llm.get_backend(), user_id=ana.id, prompt="Hi"
    )
    list(current)
    assert not r.exists(drafts.draft_key(current.session_id), drafts.lease_key(current.session_id))
    assert [m["role"] for m in history.read_all(r, session_id=current.session_id)] == [
        "user",
        "assistant",
    ]


@pytest.mark.parametrize("stop", ["close", "error"])
def test_a_turn_ended_early_in_its_process_saves_once_without_a_draft(
    dbs: Session, r: redis.Redis, ollama_env: FakeOllama, stop: str
) -> None:
    ana = identity(dbs, "ana", commit=True)
    if stop == "error":
        ollama_env.script(reply=["a ", "b ", "c "], failure="error", after=2, error="boom")
    current = chat.turn(
        database.get_sessionmaker(), r, llm.get_backend(), user_id=ana.id, prompt="Hi"
    )
    with contextlib.suppress(LLMError):  # the error case ends the stream with it
        next(current)
        current.close()
    assert not r.exists(drafts.draft_key(current.session_id))
    time.sleep(0.1)
    assert not drafts.recover(dbs, r, session_id=current.session_id)
    assert len(history.read_all(r, session_id=current.session_id)) == 2
