"""Usage page queries over 1,000,000 llm_calls rows (100 users, 90 days).

Starts a scratch embedded PostgreSQL (pgserver) in a temporary folder, migrates it to head,
fills it in SQL with generate_series (about 20 s), then times one render of the usage page's
data for the last 30 days, as an administrator sees it: all users, and one user, alternating.
One render is exactly what pages/usage.py runs (``page_render`` below; a test compares their
SQL): the admin's user picker, the quota status (one user only) and ``core.usage.dashboard``,
each in its own transaction on core's engine, as the page's ``write()`` does.

    .venv/bin/python benchmarks/usage_queries.py [--rows 1000000] [--runs 20]
    .venv/bin/python benchmarks/usage_queries.py --rows 20000 --runs 3   # a quick check
    BENCH_DATABASE_URL=postgresql://... to use a server you provide (a scratch database is made).

Targets (PERFORMANCE.md): median under 300 ms for all users, under 50 ms for one user.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from core import access, clock, database, migrate, quota, usage
from core.accounts import Identity
from core.embedded import postgres as embedded_postgres
from core.urls import sqlalchemy_url

ADMIN = "bench-admin"

GENERATE = """
INSERT INTO users (id, username, email, display_name, password_hash)
SELECT gen_random_uuid(), 'bench' || lpad(g::text, 3, '0'), 'bench' || g || '@example.com',
       'Bench ' || g, 'x'
FROM generate_series(1, :users) g;

INSERT INTO users (id, username, email, display_name, password_hash, role)
VALUES (gen_random_uuid(), :admin, 'bench-admin@example.com', 'Bench admin', 'x', 'admin');

-- Sessions as analysts make them: one model each, :per_session calls a few minutes apart,
-- starting at a random moment of the period, owned by a random user.
CREATE TEMP TABLE bench_sessions AS
WITH u AS (SELECT array_agg(id ORDER BY username) AS ids FROM users WHERE role = 'user')
SELECT n, gen_random_uuid() AS id, u.ids[1 + floor(random() * :users)::int] AS user_id,
       (:t0)::timestamptz
           + random() * ((:t1)::timestamptz - (:t0)::timestamptz - interval '2 hours') AS started,
       (ARRAY['llama3.2:3b', 'llama3.2:3b', 'llama3.1:8b', 'qwen2.5:7b', 'smollm2-135m'])
           [1 + floor(random() * 5)::int] AS model
FROM generate_series(0, :rows / :per_session) n, u;

INSERT INTO conversation_sessions (id, user_id, title, model, created_at, updated_at,
                                   message_count)
SELECT id, user_id, 'Session ' || n, model, started, started + interval '1 hour', 2 * :per_session
FROM bench_sessions;

-- Calls in time order (an append-only log).
INSERT INTO llm_calls (user_id, session_id, model, backend, prompt_tokens, completion_tokens,
                       ttft_ms, duration_ms, outcome, error, created_at)
SELECT s.user_id, s.id, s.model, 'ollama', x.prompt, x.completion,
       CASE WHEN x.outcome = 'error' THEN NULL ELSE x.ttft END,
       CASE WHEN x.outcome = 'error' THEN x.ttft
            ELSE x.ttft + x.completion * (12 + 30 * random()) END,
       x.outcome,
       CASE WHEN x.outcome = 'error' THEN 'model server unreachable' END,
       s.started + (x.i % :per_session) * interval '3 minutes' + random() * interval '2 minutes'
FROM (
    SELECT i, i / :per_session AS n,
           CASE WHEN random() < 0.03 THEN 'error' WHEN random() < 0.02 THEN 'cancelled'
                ELSE 'ok' END AS outcome,
           (200 + random() * 1800 + (i % :per_session) * 150)::int AS prompt,
           (20 + random() * 700)::int AS completion,
           80 + 600 * random() * random() AS ttft
    FROM generate_series(0, :rows - 1) i
) x
JOIN bench_sessions s ON s.n = x.n
ORDER BY 11;
"""


def page_render(
    url: str | None, *, viewer: Identity, scope: uuid.UUID | None, rng: usage.DateRange
) -> tuple[dict[str, float], usage.Dashboard]:
    """The data of one render of pages/usage.py, in its order: app.scope.pick (an admin's user
    picker), quota_panel (one user only), then the dashboard. Each runs in its own transaction
    through core.database.session_scope, as the page's ``write()`` does. Returns the seconds each
    part took, and the dashboard."""
    parts: dict[str, float] = {}

    def write(name: str, change: Callable[[Session], Any]) -> Any:
        began = time.perf_counter()
        with database.session_scope(url) as session:
            result = change(session)
        parts[name] = time.perf_counter() - began
        return result

    if viewer.is_admin:
        write("user picker", access.user_choices)
    if scope is not None:
        write("quota status", lambda d: quota.quota_status(d, user_id=scope))
    board = write(
        "dashboard", lambda d: usage.dashboard(d, user_id=scope, start=rng.start, end=rng.end)
    )
    return parts, board


def _scratch_server(work: Path) -> tuple[str, Callable[[], None]]:
    embedded_postgres.runtime_dir()
    import pgserver

    server = pgserver.get_server(work / "pg", cleanup_mode="delete")
    return server.get_uri(), server.cleanup


def _make_database(admin_url: str) -> str:
    name = f"ledger_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    from urllib.parse import urlsplit, urlunsplit

    return sqlalchemy_url(urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}")))


def _drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--range-days", type=int, default=30)
    parser.add_argument("--calls-per-session", type=int, default=20)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--database-url", default=None, help="admin URL (default: scratch)")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE plans")
    args = parser.parse_args()

    import os

    work = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    admin_url = args.database_url or os.environ.get("BENCH_DATABASE_URL")
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    if not admin_url:
        admin_url, cleanup = _scratch_server(work)
    url = _make_database(admin_url)
    engine = create_engine(url)
    try:
        migrate.upgrade(engine)
        t1 = clock.now().replace(hour=12, minute=0, second=0, microsecond=0)
        t0 = t1 - __import__("datetime").timedelta(days=args.days)
        started = time.perf_counter()
        with engine.begin() as conn:
            for statement in GENERATE.split(";\n"):
                if statement.strip():
                    conn.execute(
                        text(statement),
                        {
                            "users": args.users,
                            "admin": ADMIN,
                            "rows": args.rows,
                            "per_session": args.calls_per_session,
                            "t0": t0,
                            "t1": t1,
                        },
                    )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        print(
            f"generated {args.rows:,} llm_calls rows for {args.users} users over "
            f"{args.days} days in {time.perf_counter() - started:.1f} s"
        )

        clock.set_source(lambda: t1)
        rng = usage.last_days(args.range_days)
        with Session(engine) as session:
            one_user = session.execute(
                text("SELECT id FROM users WHERE role = 'user' ORDER BY username LIMIT 1")
            ).scalar()
            admin_id = session.execute(
                text("SELECT id FROM users WHERE username = :a"), {"a": ADMIN}
            ).scalar_one()
            in_range = session.execute(
                text("SELECT count(*) FROM llm_calls WHERE created_at >= :a AND created_at < :b"),
                {"a": rng.start_at, "b": rng.end_before},
            ).scalar()
        print(f"range {rng.start}..{rng.end}: {in_range:,} rows for all users")
        viewer = Identity(admin_id, ADMIN, "Bench admin", "admin")

        scopes: dict[str, uuid.UUID | None] = {"all users": None, "one user": one_user}
        timings: dict[str, list[float]] = {name: [] for name in scopes}
        parts: dict[str, dict[str, list[float]]] = {name: {} for name in scopes}
        queries = {
            "kpis": usage.kpis,
            "tokens_per_day": usage.tokens_per_day,
            "requests_per_day": usage.requests_per_day,
            "latency_by_model": usage.latency_by_model,
            "top_sessions": usage.top_sessions,
        }
        for run in range(args.runs + 2):  # two warm-up rounds
            for name, uid in scopes.items():  # A B A B: drift hits both sides
                began = time.perf_counter()
                spent_parts, board = page_render(url, viewer=viewer, scope=uid, rng=rng)
                spent = time.perf_counter() - began
                assert not board.empty
                if run < 2:
                    continue
                timings[name].append(spent)
                for part, value in spent_parts.items():
                    parts[name].setdefault(part, []).append(value)
                # Not part of the render: the dashboard's queries one by one, for the breakdown.
                with database.session_scope(url) as session:
                    for qname, fn in queries.items():
                        began = time.perf_counter()
                        fn(session, user_id=uid, start=rng.start, end=rng.end)  # type: ignore[operator]
                        parts[name].setdefault(f"  {qname}", []).append(time.perf_counter() - began)

        print(
            f"\none render of the usage page's queries (admin), {args.runs} runs after 2 warm-ups"
        )
        targets = {"all users": 0.300, "one user": 0.050}
        for name, values in timings.items():
            med = statistics.median(values)
            verdict = "ok" if med < targets[name] else "OVER TARGET"
            print(
                f"  {name:9}: median {_ms(med)}  p95 {_ms(_p95(values))}  "
                f"(target < {targets[name] * 1000:.0f} ms: {verdict})"
            )
            for qname, qvalues in parts[name].items():
                print(f"      {qname:18} median {_ms(statistics.median(qvalues))}")
        with Session(engine) as session:
            began = time.perf_counter()
            exact = usage.latency_by_model(
                session, user_id=None, start=rng.start, end=rng.end, exact_limit=10**12
            )
            exact_ms = (time.perf_counter() - began) * 1000
            estimated = usage.latency_by_model(session, user_id=None, start=rng.start, end=rng.end)
        columns = ["ttft_p50_ms", "ttft_p95_ms", "tokens_per_s_p50", "tokens_per_s_p95"]
        error = ((estimated[columns] - exact[columns]).abs() / exact[columns]).max().max()
        print(
            f"  all users' percentiles: estimated from usage_latency_hist "
            f"(exact={bool(estimated['percentiles_exact'].all())}), largest relative "
            f"difference from percentile_cont {error:.4%}; percentile_cont itself took "
            f"{exact_ms:.0f} ms"
        )
        if args.explain:
            _explain(url, viewer, rng, one_user)
    finally:
        clock.set_source(None)
        database.reset()
        engine.dispose()
        _drop_database(admin_url, url)
        cleanup()
        shutil.rmtree(work, ignore_errors=True)


def _explain(url: str, viewer: Identity, rng: usage.DateRange, one_user: uuid.UUID | None) -> None:
    from sqlalchemy import event

    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        captured.append((statement, parameters))

    engine = database.get_engine(url)
    event.listen(engine, "before_cursor_execute", capture)
    for uid in (None, one_user):
        page_render(url, viewer=viewer, scope=uid, rng=rng)
    event.remove(engine, "before_cursor_execute", capture)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for statement, parameters in captured:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)  # type: ignore[arg-type]
            print("\n" + statement.strip().splitlines()[0][:100])
            for (line,) in cur.fetchall():
                print("   ", line)
    finally:
        raw.close()


if __name__ == "__main__":
    main()
