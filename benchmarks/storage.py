"""History and session-list speed on the embedded servers (PERFORMANCE.md targets).

Starts the embedded Redis and PostgreSQL exactly as the app does (``core.services``), in a
temporary DATA_DIR, and times the core functions the chat and sessions pages call:

- ``history.append`` of one message to a session that holds 10,000 messages (target: median
  under 1 ms), and ``history.read_last(n=50)`` of it (target: median under 2 ms);
- ``sessions.list_for_owner(limit=50)``, the first page of a user who has 10,000 sessions,
  among 50,000 sessions of five users (target: median under 10 ms).

Method: two warm-up rounds, then ``--runs`` rounds alternating the operations (A B A B) so
machine drift hits each alike; median and p95 in milliseconds.

    .venv/bin/python benchmarks/storage.py [--runs 200] [--messages 10000] [--sessions 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

TARGETS_MS = {"history append": 1.0, "history last 50": 2.0, "sessions first page": 10.0}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def report(name: str, samples: list[float]) -> bool:
    samples = sorted(samples)
    median = statistics.median(samples)
    p95 = samples[int(0.95 * (len(samples) - 1))]
    target = TARGETS_MS[name]
    ok = median < target
    print(
        f"{name:<22} median {median:7.3f} ms   p95 {p95:7.3f} ms   target < {target:g} ms"
        f"   {'ok' if ok else 'MISSED'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=10_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ledger-bench-storage-"))
    os.environ.update(DATA_DIR=str(work / "data"), DATABASE_URL="", REDIS_URL="")
    os.chdir(work)  # no project .env values beyond what is set here
    from sqlalchemy import insert, text

    from core import accounts, database, history, migrate, services, sessions
    from core.config import get_settings
    from core.models import ConversationSession

    get_settings.cache_clear()
    try:
        # --- Redis: a session with 10,000 messages --------------------------------------
        r = services.redis_client()
        sid = uuid.uuid4()
        pipe = r.pipeline(transaction=False)
        for i in range(args.messages):
            role = "user" if i % 2 == 0 else "assistant"
            body = f"Message {i}: what drove the change in free cash flow this quarter? " * 4
            pipe.rpush(history.key(sid), history._encode(history.make_message(role, body)))
        pipe.execute()

        reply = history.make_message("assistant", "Working capital released 12 m€. " * 20)
        append = lambda: history.append(r, session_id=sid, message=reply)  # noqa: E731
        last50 = lambda: history.read_last(r, session_id=sid, n=50)  # noqa: E731

        # --- PostgreSQL: five users with 10,000 sessions each ---------------------------
        engine = database.get_engine()
        migrate.upgrade(engine)
        with database.session_scope() as s:
            users = [
                accounts.create_user(
                    s,
                    username=f"analyst{u}",
                    email=f"analyst{u}@example.com",
                    display_name=f"Analyst {u}",
                    password="benchmark password",  # noqa: S106
                ).id
                for u in range(5)
            ]
        t0 = time.time()
        with engine.begin() as conn:
            for owner in users:
                rows = [
                    {
                        "id": uuid.uuid4(),
                        "user_id": owner,
                        "title": f"Session {i}",
                        "model": "llama3.2:3b",
                        "message_count": 10,
                        "created_at": _ts(t0 - i * 600),
                        "updated_at": _ts(t0 - i * 600 + 300),
                    }
                    for i in range(args.sessions)
                ]
                conn.execute(insert(ConversationSession), rows)
            conn.execute(text("ANALYZE conversation_sessions"))
        owner = users[2]

        def first_page() -> None:
            with database.session_scope() as s:
                page = sessions.list_for_owner(s, user_id=owner, limit=50)
                assert len(page) == 50

        # --- measure ------------------------------------------------------------------
        ops = {
            "history append": append,
            "history last 50": last50,
            "sessions first page": first_page,
        }
        samples: dict[str, list[float]] = {name: [] for name in ops}
        for _ in range(2):
            for fn in ops.values():
                fn()
        for _ in range(args.runs):
            for name, fn in ops.items():
                samples[name].append(timed(fn))

        print(
            f"embedded Redis (AOF, appendfsync={get_settings().redis_appendfsync}) and "
            f"PostgreSQL 16 in {work}; {args.runs} runs each, alternating"
        )
        print(
            f"history: {args.messages:,} messages in one session; sessions: "
            f"{args.sessions:,} per user, 5 users"
        )
        results = [report(name, values) for name, values in samples.items()]
        return 0 if all(results) else 1
    finally:
        database.reset()
        services.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def _ts(epoch: float) -> object:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC)


if __name__ == "__main__":
    raise SystemExit(main())
