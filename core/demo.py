"""Demo data: analysts, finance conversations in Redis and usage rows over the last 60 days,
so the dashboard and notebooks have something to show on a fresh machine.

Runs only when asked (``python -m core seed-demo``). Demo accounts are recognisable by their
e-mail domain; seeding refuses while any exist, unless told to replace them.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import accounts, history
from core.clock import now
from core.errors import Conflict, InvalidInput
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
    ModelProfile("smollm2-135m", "llamacpp", 140.0, 85.0, 0.1),
]

_COMPANIES = ["Northwind", "Contoso", "Fabrikam", "Globex", "Initech", "Umbrella Retail", "Acme"]
_QUARTERS = ["Q1", "Q2", "Q3", "Q4"]


Figures = Callable[[random.Random], dict[str, str]]


def _m(value: float) -> str:
    return f"${value:,.1f}m"


def _p(value: float) -> str:
    return f"{value * 100:.1f}%"


# Each topic's figures are drawn together so that they agree with each other (a bridge adds up,
# a margin is EBITDA over revenue): analysts reading the demo check the arithmetic.


def _bridge(rng: random.Random) -> dict[str, str]:
    # The answer says volume explains most of the growth and FX mostly offsets pricing.
    start, volume = rng.uniform(40, 900), rng.uniform(0.03, 0.12)
    price = volume * rng.uniform(0.2, 0.7)
    fx = price * rng.uniform(0.5, 0.9)
    return {
        "m1": _m(start),
        "m2": _m(start * (1 + volume + price - fx)),
        "p1": _p(volume),
        "p2": _p(price),
        "p3": _p(fx),
        "p4": _p(volume + price),
        "p5": _p(volume + price - fx),
    }


def _margin(rng: random.Random) -> dict[str, str]:
    revenue, margin = rng.uniform(80, 900), rng.uniform(0.08, 0.28)
    return {
        "m1": _m(revenue * margin),
        "m2": _m(revenue),
        "m3": _m(revenue * margin * rng.uniform(0.02, 0.08)),
        "p1": _p(margin + rng.uniform(0.01, 0.06)),  # the answer says it is below the median
        "p2": _p(margin),
    }


def _dcf(rng: random.Random) -> dict[str, str]:
    fcf, growth, wacc, g = (
        rng.uniform(20, 300),
        rng.uniform(0.02, 0.08),
        rng.uniform(0.07, 0.11),
        0.02,
    )

    def value(rate: float) -> tuple[float, float]:
        flows = [fcf * (1 + growth) ** t for t in range(6)]
        explicit = sum(flows[t] / (1 + rate) ** (t + 1) for t in range(5))
        terminal = flows[5] / (rate - g) / (1 + rate) ** 5
        return explicit + terminal, terminal

    ev, terminal = value(wacc)
    return {
        "m1": _m(fcf),
        "m3": _m(ev * rng.uniform(0.1, 0.35)),
        "m4": _m(ev),
        "p1": _p(growth),
        "p2": _p(wacc),
        "p3": _p(terminal / ev),
        "p4": _p(1 - value(wacc + 0.005)[0] / ev),
    }


def _working_capital(rng: random.Random) -> dict[str, str]:
    revenue = rng.uniform(60, 900)
    return {
        "m1": _m(revenue * rng.uniform(0.03, 0.1)),
        "m2": _m(revenue),
        "m3": _m(revenue / 91 * 11),  # 11 more days of a quarter's revenue
        "p1": _p(rng.uniform(0.05, 0.2)),
    }


def _covenant(rng: random.Random) -> dict[str, str]:
    ebitda, leverage = rng.uniform(40, 400), rng.uniform(1.5, 3.0)
    net_debt = ebitda * leverage
    draw = ebitda * rng.uniform(0.05, 3.5 - leverage) * 0.8
    return {
        "m1": _m(ebitda),
        "m3": _m(draw),
        "m4": _m(net_debt),
        "p2": _p(1 - leverage / 3.5),
        "p3": _p(1 - (net_debt + draw) / ebitda / 3.5),
    }


def _variance(rng: random.Random) -> dict[str, str]:
    budget = rng.uniform(40, 400)
    over = budget * rng.uniform(0.02, 0.12)
    return {
        "m1": _m(budget),
        "m2": _m(budget + over),
        "m3": _m(over),
        "m4": _m(over * rng.uniform(1.5, 3.0)),
        "p1": _p(over / budget),
        "n1": str(rng.randint(3, 25)),
    }


def _cash(rng: random.Random) -> dict[str, str]:
    minimum = rng.uniform(5, 40)
    return {"m1": _m(minimum * rng.uniform(1.1, 1.6)), "m3": _m(minimum)}


def _lease(rng: random.Random) -> dict[str, str]:
    payments = rng.uniform(5, 80)
    return {"m1": _m(payments), "m4": _m(payments * rng.uniform(4, 8))}


def _values(rng: random.Random, figures: Figures) -> dict[str, str]:
    return {"co": rng.choice(_COMPANIES), "q": rng.choice(_QUARTERS)} | figures(rng)


# Each topic: a title pattern, turns of (question, answer) templates, and the function that
# draws the topic's figures.
_TOPICS: list[tuple[str, list[tuple[str, str]], Figures]] = [
    (
        "{co} {q} revenue bridge",
        [
            (
                "Build a revenue bridge for {co} from {q} last year ({m1}) to {q} this year "
                "({m2}). Volume was up {p1}, price/mix added {p2}, FX was a headwind.",
                "Here is the bridge from {m1} to {m2}:\n\n| Driver | Impact |\n|---|---|\n"
                "| Volume | +{p1} |\n| Price/mix | +{p2} |\n| FX | −{p3} |\n\nVolume explains most "
                "of the growth; the FX headwind of {p3} mostly offsets price increases in EMEA. "
                "I would check whether the price/mix figure includes the new premium tier.",
            ),
            (
                "How should I present the FX effect to the CFO?",
                "Show revenue at constant currency next to reported revenue. At constant "
                "currency growth is {p4} instead of the reported {p5}; state the average rates "
                "used and keep the translation effect separate from transaction hedging gains.",
            ),
            (
                "Draft two sentences for the board pack.",
                "Revenue grew to {m2} in {q}, driven by volume (+{p1}) and pricing (+{p2}). "
                "Adverse currency movements reduced reported growth by {p3}.",
            ),
        ],
        _bridge,
    ),
    (
        "EBITDA margin – {co}",
        [
            (
                "{co} reported EBITDA of {m1} on revenue of {m2}. What is the margin and how "
                "does it compare with a peer median of {p1}?",
                "EBITDA margin is EBITDA divided by revenue, here {p2}. That is below the peer "
                "median of {p1}; the gap is mostly gross margin, since opex as a share of "
                "revenue is in line with peers.",
            ),
            (
                "Which one-off items should I adjust for?",
                "Typical adjustments: restructuring costs ({m3} disclosed), impairment, "
                "gains on asset sales and share-based compensation if peers exclude it. Adjust "
                "consistently across the peer set, and show the bridge from reported to "
                "adjusted EBITDA.",
            ),
        ],
        _margin,
    ),
    (
        "DCF for {co}",
        [
            (
                "Set up a DCF for {co}: free cash flow next year {m1}, growth {p1} for five "
                "years, terminal growth 2%, WACC {p2}.",
                "Discount each year's free cash flow at {p2}: FCF_t = {m1} × (1 + {p1})^(t−1). "
                "Terminal value at year 5 = FCF_6 / (WACC − g). With these inputs enterprise "
                "value is about {m4}; the terminal value is roughly {p3} of it, so the result "
                "is very sensitive to WACC.",
            ),
            (
                "Show me a sensitivity table for WACC and terminal growth.",
                "Use WACC from {p2} − 1pp to + 1pp in 0.5pp steps against terminal growth of "
                "1.5%, 2.0% and 2.5%. Each +0.5pp of WACC lowers the value by roughly {p4}; "
                "check that WACC stays well above g in every cell.",
            ),
            (
                "What net debt figure should I subtract?",
                "Use debt including leases (IFRS 16) minus cash, as of the valuation date: "
                "{m3}. Add minority interests and subtract associates if material.",
            ),
        ],
        _dcf,
    ),
    (
        "Working capital review {q}",
        [
            (
                "DSO went from 41 to 52 days at {co} this quarter. What could explain it?",
                "An 11-day rise in DSO usually means slower collections, a shift to customers "
                "with longer terms, or revenue booked late in the quarter. With quarterly "
                "revenue of {m2} that ties up about {m3} of extra receivables.",
            ),
            (
                "And inventory days?",
                "Inventory days rose {p1}; together with DSO the cash conversion cycle "
                "lengthened, which explains most of the drop in operating cash flow to {m1}.",
            ),
        ],
        _working_capital,
    ),
    (
        "Covenant headroom {co}",
        [
            (
                "Our facility has a net leverage covenant of 3.5x. Net debt is {m4} and LTM "
                "EBITDA is {m1}. How much headroom do we have?",
                "Net leverage is net debt / LTM EBITDA. EBITDA could fall by about {p2} before "
                "the covenant is breached. Check whether the agreement allows pro-forma "
                "adjustments for acquisitions and cost savings.",
            ),
            (
                "What if we draw another {m3} on the revolver?",
                "Net debt rises one-for-one unless the cash stays on balance sheet; if it is "
                "spent, headroom shrinks to roughly {p3} of EBITDA.",
            ),
        ],
        _covenant,
    ),
    (
        "Budget variance {q} – opex",
        [
            (
                "Opex came in at {m2} against a budget of {m1}. Break down the variance.",
                "The variance is {m3} over budget ({p1}). Personnel accounts for most of it "
                "(hiring ahead of plan), followed by marketing timing. Separate timing "
                "differences from permanent overspend before forecasting the full year.",
            ),
            (
                "Is the overspend permanent?",
                "Marketing is timing (campaign moved from {q} into this quarter). Personnel "
                "is permanent: {n1} more heads than budget, a run-rate of about {m4} a year.",
            ),
        ],
        _variance,
    ),
    (
        "13-week cash flow forecast",
        [
            (
                "Help me structure a 13-week cash flow forecast for {co}.",
                "Start from opening cash, then weekly receipts (by customer cohort, using "
                "actual DSO), payments (payroll, suppliers by terms, rent, tax, debt service) "
                "and closing cash. Flag weeks where cash falls below the {m3} minimum.",
            ),
            (
                "Which week is the low point?",
                "Week 9: quarterly VAT and the interest payment coincide, so cash dips to about "
                "{m1}. Moving a supplier run by one week keeps the buffer above {m3}.",
            ),
        ],
        _cash,
    ),
    (
        "IFRS 16 lease question",
        [
            (
                "How does IFRS 16 change EBITDA for {co}, with annual lease payments of {m1}?",
                "Under IFRS 16 lease payments leave opex: EBITDA rises by roughly {m1}, while "
                "depreciation of the right-of-use asset and interest on the lease liability "
                "appear below EBITDA. Net debt rises by the lease liability, about {m4}.",
            ),
        ],
        _lease,
    ),
]


def _fill(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


@dataclass
class Turn:
    question: str
    answer: str


@dataclass
class Conversation:
    title: str
    turns: list[Turn] = field(default_factory=list)


def conversation(rng: random.Random, *, turns: int | None = None) -> Conversation:
    """A finance conversation: a topic's turns in order, then follow-ups until ``turns``."""
    title_t, script, figures = rng.choice(_TOPICS)
    values = _values(rng, figures)
    wanted = turns if turns is not None else rng.randint(1, len(script) + 3)
    result = Conversation(_fill(title_t, values))
    for i in range(wanted):
        if i < len(script):
            q, a = script[i]
        else:
            _, other, figures = rng.choice(_TOPICS)
            q, a = rng.choice(other)
            values = _values(rng, figures) | {"co": values["co"]}
        result.turns.append(Turn(_fill(q, values), _fill(a, values)))
    return result


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
        id=sid, user_id=user_id, title=talk.title[:200], model=model.name, created_at=start
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
        prompt = context + _tokens(turn.question)
        ttft = _lognormal(rng, model.ttft_ms, 0.35)
        roll = rng.random()
        outcome = "error" if roll < 0.03 else "cancelled" if roll < 0.06 else "ok"
        failed = outcome == "error"
        answer = turn.answer
        if outcome == "cancelled":
            answer = answer[: max(20, len(answer) // 3)]
        completion = 0 if failed else _tokens(answer)
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
        # The stats the chat records with a reply (core.chat.TurnStats), so the chat caption,
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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "seed-demo",
        help="create demo analysts, finance conversations and 60 days of usage",
        description="Create demo users (e-mail @ledger-demo.example) with sessions, chat "
        "history in Redis and usage rows over the last 60 days. Refuses when demo users "
        "exist, unless --replace.",
    )
    p.add_argument("--users", type=int, default=3, help="demo users to create (default 3)")
    p.add_argument("--sessions", type=int, default=50, help="sessions per user (default 50)")
    p.add_argument("--password", default=None, help="their password (default: generated)")
    p.add_argument("--replace", action="store_true", help="delete existing demo data first")
    p.add_argument("--seed", type=int, default=None, help="random seed (repeatable data)")
    p.set_defaults(handler=_seed_command)


def _seed_command(args: argparse.Namespace) -> int:
    from core import db as dbmod
    from core import services

    if args.password is not None:
        accounts.validate_password(args.password)
    client = services.redis_client()
    with dbmod.session_scope() as db:
        report = seed(
            db,
            client,
            users=args.users,
            sessions_per_user=args.sessions,
            password=args.password,
            replace=args.replace,
            random_seed=args.seed,
        )
    print(
        f"created {len(report.usernames)} demo users, {report.sessions:,} sessions, "
        f"{report.messages:,} messages and {report.calls:,} usage rows over {SPAN_DAYS} days"
    )
    print(f"usernames: {', '.join(report.usernames)}")
    print(f"password: {report.password}" if args.password is None else "password: as given")
    return 0


def iter_benchmark_sessions(
    rng: random.Random, *, sessions: int, messages: int
) -> Iterator[tuple[str, list[str]]]:
    """(title, encoded messages) for benchmarks: ``messages`` per session, finance text."""
    base = datetime(2026, 1, 5, 9, tzinfo=UTC)
    for n in range(sessions):
        talk = conversation(rng, turns=messages // 2)
        t = base + timedelta(hours=n)
        out = []
        for turn in talk.turns:
            out.append(_encode({"role": "user", "content": turn.question, "ts": t.isoformat()}))
            t += timedelta(seconds=30)
            out.append(_encode({"role": "assistant", "content": turn.answer, "ts": t.isoformat()}))
        yield talk.title, out
