"""``python -m core seed-demo``: demo analysts, finance conversations and 60 days of usage."""

from __future__ import annotations

import argparse

from core import accounts, database, services
from core.demo import SPAN_DAYS, seed


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
    p.set_defaults(handler=_seed)


def _seed(args: argparse.Namespace) -> int:
    if args.password is not None:
        accounts.validate_password(args.password)
    client = services.redis_client()
    with database.session_scope() as db:
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
