"""Login timing: a real user vs an unknown username (the dummy-hash path).

What the login form does per attempt: one transaction through ``core.accounts.login`` and its
commit (lockout bookkeeping included), on a real embedded PostgreSQL in a temporary folder
(or DATABASE_URL if set). The three cases are measured alternately (A B C A B C ...) after a
warm-up, so machine drift hits them alike; failure counters are reset between attempts (not
timed) so nothing locks. Target: unknown-user median within 10% of the real user's.

    .venv/bin/python benchmarks/login.py [--rounds 12] [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PASSWORD = "correct horse battery"  # noqa: S105 (a throwaway benchmark account)
WRONG = "wrong horse battery!"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="bcrypt cost (default 12)")
    parser.add_argument("--runs", type=int, default=30, help="measured attempts per case")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="ledger-bench-login-")
    os.environ["BCRYPT_ROUNDS"] = str(args.rounds)
    os.environ.setdefault("DATA_DIR", str(Path(work) / "data"))
    os.environ.setdefault("AUTH_COOKIE_KEY", "bench-" + "x1y2z3" * 8)

    from sqlalchemy import update

    from core import accounts, db, migrate, services
    from core.models import LoginFailure, User

    migrate.upgrade(db.get_engine())
    name = f"bench{os.getpid()}"
    with db.session_scope() as session:
        if accounts.get_by_username(session, username=name) is None:
            accounts.create_user(
                session,
                username=name,
                email=f"{name}@example.com",
                display_name="Bench",
                password=PASSWORD,
            )

    def attempt(username: str, password: str) -> float:
        started = time.perf_counter()
        with db.session_scope() as session:
            accounts.login(session, username=username, password=password)
        elapsed = time.perf_counter() - started
        with db.session_scope() as session:  # not timed: keep every attempt a first failure
            session.execute(update(User).values(failed_logins=0, locked_until=None))
            session.execute(update(LoginFailure).values(failed_logins=0, locked_until=None))
        return elapsed

    cases: dict[str, Callable[[], float]] = {
        "real user, right password": lambda: attempt(name, PASSWORD),
        "real user, wrong password": lambda: attempt(name, WRONG),
        "unknown username": lambda: attempt(f"ghost{os.getpid()}", WRONG),
    }
    for _ in range(2):
        for run in cases.values():
            run()
    samples: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(args.runs):
        for label, run in cases.items():
            samples[label].append(run())

    def median_ms(label: str) -> float:
        return statistics.median(samples[label]) * 1000

    print(f"login timing, bcrypt cost {args.rounds}, {args.runs} runs per case (medians, p95)")
    for label, values in samples.items():
        p95 = statistics.quantiles(values, n=20)[-1] * 1000
        print(f"  {label:<28} median {median_ms(label):7.1f} ms   p95 {p95:7.1f} ms")
    unknown = median_ms("unknown username")
    for label in ("real user, wrong password", "real user, right password"):
        ratio = unknown / median_ms(label)
        verdict = "ok" if abs(ratio - 1) <= 0.10 else "OUTSIDE 10%"
        print(f"  unknown / {label:<26} {ratio:5.3f}  ({verdict})")

    db.reset()
    services.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
