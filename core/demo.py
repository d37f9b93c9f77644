"""Demo data: analysts, finance conversations in Redis and usage rows over the last 60 days,
so the dashboard and notebooks have something to show on a fresh machine.

Runs only when asked (``python -m core seed-demo``). Demo accounts are recognisable by their
e-mail domain; seeding refuses while any exist, unless told to replace them.
"""

from __future__ import annotations

import json
import math
import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import accounts, history, sessions
from core.clock import now
from core.demo_conversations import conversation, tokens
from core.errors import Conflict, InvalidInput
from core.llm.llamacpp import SMOLLM2_FILE
from core.models import ConversationSession, LlmCall, User

DEMO_DOMAIN = "ledger-demo.example"
DEMO_NAMES = [
    ("maria.lopez", "María López"),
    ("james.chen", "James Chen"),
    ("aisha.khan", "Aisha Khan"),
    ("tom.becker", "Tom Becker"),
    ("sofia.rossi", "Sofia Rossi"),
    ("kwame.mensah", "Kwame Mensah"),
    ("emma.larsen", "Emma Larsen"),
    ("raj.patel", "Raj Patel"),
]
MAX_USERS = 50
MAX_SESSIONS = 2000
SPAN_DAYS = 60
SYSTEM_TOKENS = 160
FAILURE = "Could not reach the model server (connection refused)."


@dataclass(frozen=True)
class ModelProfile:
    name: str
    backend: str
    ttft_ms: float  # median time to first token
    tokens_per_s: float  # median generation speed
    weight: float  # how often analysts pick it


MODELS = [
    ModelProfile("llama3.2:3b", "ollama", 260.0, 38.0, 0.45),
    ModelProfile("llama3.1:8b", "ollama", 620.0, 16.0, 0.25),
    ModelProfile("qwen2.5:7b", "ollama", 480.0, 19.0, 0.2),
    # The name the embedded model's calls are recorded under (LlamaCppBackend.default_model),
    # so demo usage and real usage of it are one series, not two.
    ModelProfile(SMOLLM2_FILE.removesuffix(".gguf"), "llamacpp", 140.0, 85.0, 0.1),
]


@dataclass(frozen=True)
class SeedReport:
    usernames: list[str]
    password: str
    sessions: int
    messages: int
    calls: int


def existing_demo_users(db: Session) -> list[str]:
    stmt = select(User.username).where(User.email.like(f"%@{DEMO_DOMAIN}")).order_by(User.username)
    return list(db.scalars(stmt))


def remove_demo_users(db: Session, r: redis.Redis) -> list[str]:
    """Delete every demo account with its sessions, histories and usage."""
    users = db.execute(select(User.id, User.username).where(User.email.like(f"%@{DEMO_DOMAIN}")))
    removed = []
    for uid, username in users.all():
        ids = list(
            db.scalars(select(ConversationSession.id).where(ConversationSession.user_id == uid))
        )
        for start in range(0, len(ids), 500):
            pipe = r.pipeline(transaction=False)
            for sid in ids[start : start + 500]:
                pipe.unlink(history.key(sid))
            pipe.execute()
        user = db.get(User, uid)
        if user is not None:
            db.delete(user)
        removed.append(username)
    db.flush()
    return removed


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _pick_model(rng: random.Random) -> ModelProfile:
    return rng.choices(MODELS, weights=[m.weight for m in MODELS])[0]


def _demo_username(i: int) -> tuple[str, str]:
    if i < len(DEMO_NAMES):
        return DEMO_NAMES[i]
    return f"analyst{i + 1:02d}", f"Analyst {i + 1}"


def _encode(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def seed(
    db: Session,
    r: redis.Redis,
    *,
    users: int = 3,
    sessions_per_user: int = 50,
    password: str | None = None,
    replace: bool = False,
    random_seed: int | None = None,
) -> SeedReport:
    """Create demo analysts with sessions, histories and usage over the last 60 days.

    Refuses (``Conflict``, naming them) when demo users exist, unless ``replace``.
    """
    if not 1 <= users <= MAX_USERS:
        raise InvalidInput("users", f"Choose between 1 and {MAX_USERS} demo users.")
    if not 1 <= sessions_per_user <= MAX_SESSIONS:
        raise InvalidInput("sessions", f"Choose between 1 and {MAX_SESSIONS} sessions per user.")
    found = existing_demo_users(db)
    if found and not replace:
        raise Conflict(
            f"Demo data already exists (users: {', '.join(found)}); nothing was changed. "
            "Run with --replace to delete and recreate it."
        )
    if found:
        remove_demo_users(db, r)
    password = password or secrets.token_urlsafe(12)
    rng = random.Random(random_seed)
    end = now().astimezone(UTC)
    report_users: list[str] = []
    total_sessions = total_messages = total_calls = 0
    for i in range(users):
        username, display = _demo_username(i)
        user = accounts.create_user(
            db,
            username=username,
            email=f"{username}@{DEMO_DOMAIN}",
            display_name=display,
            password=password,
        )
        report_users.append(user.username)
        for _ in range(sessions_per_user):
            m, c = _seed_session(db, r, rng, user_id=user.id, end=end)
            total_sessions += 1
            total_messages += m
            total_calls += c
        db.flush()
    return SeedReport(report_users, password, total_sessions, total_messages, total_calls)


def _seed_session(
    db: Session, r: redis.Redis, rng: random.Random, *, user_id: uuid.UUID, end: datetime
) -> tuple[int, int]:
    talk = conversation(rng)
    model = _pick_model(rng)
    # Busier on weekdays and in working hours, on the last SPAN_DAYS days (today included).
    while True:
        day = end.date() - timedelta(days=rng.randrange(SPAN_DAYS))
        if day.weekday() < 5 or rng.random() < 0.25:
            break
    hour = rng.choice([8, 9, 10, 11, 13, 14, 15, 16, 17])
    start = datetime(day.year, day.month, day.day, hour, rng.randrange(60), tzinfo=UTC)
    start = min(start, end - timedelta(minutes=6 * len(talk.turns) + 1))
    sid = uuid.uuid4()
    row = ConversationSession(
        # Titled as the app titles a session: from its first question, which it then matches.
        id=sid,
        user_id=user_id,
        title=sessions.title_from_prompt(talk.turns[0].question),
        model=model.name,
        created_at=start,
    )
    db.add(row)
    db.flush()
    messages: list[str] = []
    context = SYSTEM_TOKENS
    t = start
    prompt_sum = completion_sum = calls = 0
    for turn in talk.turns:
        t += timedelta(seconds=rng.uniform(20, 240))
        messages.append(_encode({"role": "user", "content": turn.question, "ts": t.isoformat()}))
        prompt = context + tokens(turn.question)
        ttft = _lognormal(rng, model.ttft_ms, 0.35)
        roll = rng.random()
        outcome = "error" if roll < 0.03 else "cancelled" if roll < 0.06 else "ok"
        failed = outcome == "error"
        answer = turn.answer
        if outcome == "cancelled":
            answer = answer[: max(20, len(answer) // 3)]
        completion = 0 if failed else tokens(answer)
        speed = _lognormal(rng, model.tokens_per_s, 0.2)
        duration = ttft + completion / speed * 1000.0
        reply_at = t + timedelta(milliseconds=duration)
        ttft_ms = None if failed else round(ttft, 1)  # as recorded in the row and the stats
        duration_ms = round(ttft if failed else duration, 1)
        calls += 1
        db.add(
            LlmCall(
                user_id=user_id,
                session_id=sid,
                model=model.name,
                backend=model.backend,
                prompt_tokens=prompt,
                completion_tokens=completion,
                ttft_ms=ttft_ms,
                duration_ms=duration_ms,
                outcome=outcome,
                error=FAILURE if failed else None,
                created_at=t,
            )
        )
        prompt_sum += prompt
        completion_sum += completion
        # The stats the chat records with a reply (core.turn.TurnStats), so the chat caption,
        # exports and notebooks show demo replies like real ones.
        stats = {
            "model": model.name,
            "backend": model.backend,
            "outcome": outcome,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "ttft_ms": ttft_ms,
            "duration_ms": duration_ms,
            "tokens_per_second": None if failed else round(speed, 1),
            "estimated": outcome == "cancelled",  # a stopped stream sends no usage figures
        }
        reply: dict[str, Any] = {
            "role": "assistant",
            "content": "" if failed else answer,
            "ts": reply_at.isoformat(),
            "stats": stats,
        }
        if failed:
            reply["status"] = "error"
            reply["error"] = FAILURE
        elif outcome == "cancelled":
            reply["status"] = "interrupted"
        messages.append(_encode(reply))
        context = prompt + completion
        t = reply_at
    row.message_count = len(messages)
    row.prompt_tokens = prompt_sum
    row.completion_tokens = completion_sum
    row.updated_at = t
    r.rpush(history.key(sid), *messages)
    return len(messages), calls
