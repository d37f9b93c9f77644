"""Login timing: a known user vs an unknown username (the dummy-hash path) vs a locked user.

What the login form does per attempt: one transaction through ``core.login.attempt`` and its
commit (lockout bookkeeping and the per-address count in Redis included). It runs on a
PostgreSQL and Redis of its own: embedded servers started in a temporary folder, whatever
DATABASE_URL or a .env says, stopped and deleted at the end, so no real account is touched and
nothing is left behind.

The cases are measured alternately (A B C D A B C D ...) after a warm-up, so machine drift hits
them alike. Between attempts (not timed) the failure counts and the address's count are reset,
so each attempt is a first failure and nothing locks; the locked user stays locked.
Target: unknown-user and locked-user medians within 10% of the known user's.

    .venv/bin/python benchmarks/login.py [--rounds 12] [--runs 12]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from core import login
from core.embedded import postgres as embedded_postgres

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PASSWORD = "correct horse battery"  # noqa: S105 (a throwaway benchmark account)
WRONG = "wrong horse battery!"
KNOWN, LOCKED, GHOST = "benchuser", "benchlocked", "benchghost"
TARGET = 0.10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="bcrypt cost (default 12)")
    parser.add_argument("--runs", type=int, default=12, help="measured attempts per case")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ledger-bench-login-"))
    try:
        return measure(work, rounds=args.rounds, runs=args.runs)
    finally:
        from core import database, services

        database.reset()
        services.shutdown()  # the embedded server's last user leaves: it stops
        shutil.rmtree(work, ignore_errors=True)


def measure(work: Path, *, rounds: int, runs: int) -> int:
    os.environ.update(
        {
            "DATA_DIR": str(work / "data"),
            "BCRYPT_ROUNDS": str(rounds),
            "LOGIN_MAX_ATTEMPTS": "5",
            "LOGIN_LOCKOUT_MINUTES": "15",
            "AUTH_COOKIE_KEY": "bench-" + "x1y2z3" * 8,
            "REDIS_URL": "",  # blank: the embedded Redis in DATA_DIR, whatever a .env says
        }
    )

    # Set explicitly: an environment variable outranks DATABASE_URL in any .env file.
    os.environ["DATABASE_URL"] = embedded_postgres.start_embedded_postgres(work / "pg")

    from sqlalchemy import delete
    from sqlalchemy.dialects.postgresql import insert

    from core import accounts, clock, database, migrate, services
    from core.config import get_settings
    from core.models import LoginAttempt

    get_settings.cache_clear()
    migrate.upgrade(database.get_engine())
    with database.session_scope() as session:
        for name in (KNOWN, LOCKED):
            accounts.create_user(
                session,
                username=name,
                email=f"{name}@example.com",
                display_name="Bench",
                password=PASSWORD,
            )
        session.flush()
        until = clock.now() + timedelta(days=1)
        for client in login.Client().rows():  # locked for the address the attempts come from
            session.execute(
                insert(LoginAttempt).values(
                    name=LOCKED, client=client, failed=5, locked_until=until, updated_at=clock.now()
                )
            )
    r = services.redis_client()

    def attempt(username: str, password: str) -> float:
        started = time.perf_counter()
        with database.session_scope() as session:
            result = login.attempt(session, r, username=username, password=password)
        elapsed = time.perf_counter() - started
        assert result.ok == (username == KNOWN and password == PASSWORD), result
        with database.session_scope() as session:  # not timed: keep every attempt a first failure
            session.execute(delete(LoginAttempt).where(LoginAttempt.name.in_([KNOWN, GHOST])))
        for key in r.scan_iter("throttle:login:*"):
            r.delete(key)
        return elapsed

    cases: dict[str, Callable[[], float]] = {
        "known user, right password": lambda: attempt(KNOWN, PASSWORD),
        "known user, wrong password": lambda: attempt(KNOWN, WRONG),
        "unknown username": lambda: attempt(GHOST, WRONG),
        "locked user, right password": lambda: attempt(LOCKED, PASSWORD),
    }
    for _ in range(2):
        for run in cases.values():
            run()
    samples: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(runs):
        for label, run in cases.items():
            samples[label].append(run())

    def median_ms(label: str) -> float:
        return statistics.median(samples[label]) * 1000

    print(
        f"login timing: bcrypt cost {rounds}, {runs} runs per case, own embedded "
        "PostgreSQL (median, p95)"
    )
    for label, values in samples.items():
        p95 = statistics.quantiles(values, n=20, method="inclusive")[-1] * 1000
        print(f"  {label:<28} median {median_ms(label):7.1f} ms   p95 {p95:7.1f} ms")
    print(f"  ratios of medians (target: within {TARGET:.0%} of the known user's)")
    for slow, base in [
        ("unknown username", "known user, wrong password"),
        ("unknown username", "known user, right password"),
        ("locked user, right password", "known user, wrong password"),
    ]:
        ratio = median_ms(slow) / median_ms(base)
        verdict = "ok" if abs(ratio - 1) <= TARGET else f"OUTSIDE {TARGET:.0%}"
        print(f"  {slow + ' / ' + base:<56} {ratio:5.3f}  ({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
