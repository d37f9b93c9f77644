"""The daily token quota holds across app processes: two processes, each with several chat
turns at once for one user, against real PostgreSQL and Redis and a server speaking Ollama's
protocol. Every turn holds its most possible use against the quota before it starts
(``core.quota.reserve``), so together they never exceed it by more than one turn's hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import LlmCall, QuotaReservation, User
from tests.support.fake_ollama import FakeOllama
from tests.support.people import make_user

ROOT = Path(__file__).resolve().parents[2]
QUOTA, HOLD = 1200, 1024  # the hold: LLM_MAX_CONTEXT_TOKENS below
THREADS, TURNS = 4, 3

CHILD = """
import json, sys, threading, uuid
from core import chat, database, llm, services
from core.errors import QuotaExceeded

user = uuid.UUID(sys.argv[1])
outcomes = []

def worker():
    for _ in range(int(sys.argv[3])):
        try:
            turn = chat.turn(database.get_sessionmaker(), services.redis_client(),
                             llm.get_backend(), user_id=user, prompt="Explain gearing")
            for _text in turn:
                pass
            outcomes.append("ok")
        except QuotaExceeded:
            outcomes.append("refused")

threads = [threading.Thread(target=worker) for _ in range(int(sys.argv[2]))]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(outcomes))
"""


def test_concurrent_turns_in_two_processes_never_exceed_the_quota_by_more_than_one_hold(
    dbs: Session, r: redis.Redis, ollama_env: FakeOllama
) -> None:
    user = make_user(dbs, "ana")
    dbs.get(User, user.id).daily_token_quota = QUOTA  # type: ignore[union-attr]
    dbs.commit()
    ollama_env.script(reply=[f"w{i} " for i in range(60)], delay=0.01)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LLM_MAX_CONTEXT_TOKENS": str(HOLD),
        "LLM_READ_TIMEOUT_SECONDS": "30",
    }
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(user.id), str(THREADS), str(TURNS)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = []
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        outcomes += json.loads(out)
    assert len(outcomes) == 2 * THREADS * TURNS
    dbs.expire_all()
    calls = dbs.scalars(select(LlmCall).where(LlmCall.user_id == user.id)).all()
    used = sum(c.prompt_tokens + c.completion_tokens for c in calls)
    smallest = min(c.prompt_tokens + c.completion_tokens for c in calls)
    assert outcomes.count("ok") == len(calls) >= 2
    assert "refused" in outcomes
    # Without the holds every attempt would have run: the guard is what kept use down.
    assert len(outcomes) * smallest > QUOTA + HOLD
    assert used <= QUOTA + HOLD
    held = dbs.scalar(select(func.count()).select_from(QuotaReservation))
    assert held == 0  # every turn gave its hold back with its usage row
