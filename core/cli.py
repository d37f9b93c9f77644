"""``python -m core <command>``: the operator's and the terminal user's entry point.

Every command that fails for a reason a person can fix prints one line, ``error: ...``, and
exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from core.errors import LedgerError

Handler = Callable[[argparse.Namespace], int]


def _check(args: argparse.Namespace) -> int:
    """Connect to every service and say what is in use."""
    from core import db, services
    from core.config import get_settings

    settings = get_settings()
    engine = db.get_engine()
    services.ping_postgres(engine)
    client = services.redis_client(settings)
    services.ping_redis(client)
    for info in services.describe(settings):
        print(f"{info.name}: {info.url} — ok")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    """Bring the database schema to the newest revision."""
    from core import db, migrate, services

    engine = db.get_engine()
    services.ping_postgres(engine)
    before = migrate.current(engine)
    migrate.upgrade(engine, args.revision)
    after = migrate.current(engine)
    print(f"database schema: {before or 'empty'} -> {after}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    """What `make run` does before starting the app: check services, migrate, prepare secrets."""
    from core import startup

    for line in startup.prepare():
        print(line)
    return 0


CORE_COMMANDS = ("check", "migrate", "prepare")


def build_parser(*, extensions: bool = True) -> argparse.ArgumentParser:
    """All commands; ``extensions=False``: only CORE_COMMANDS, without importing the features'
    modules (chat, pandas...), which `make run`'s prepare step would otherwise wait a second
    for on every start."""
    parser = argparse.ArgumentParser(prog="python -m core", description="Ledger's command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="connect to PostgreSQL and Redis and report")
    p.set_defaults(handler=_check)

    p = sub.add_parser("migrate", help="upgrade the database schema (alembic upgrade)")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(handler=_migrate)

    p = sub.add_parser("prepare", help="check services, migrate and prepare secrets (make run)")
    p.set_defaults(handler=_prepare)

    for register in _extensions() if extensions else []:
        register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Commands that live beside the feature they serve (accounts, chat, seeding...)."""
    from core import cli_commands

    return cli_commands.REGISTRARS


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(extensions=not (argv and argv[0] in CORE_COMMANDS))
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from core.services import explain

        explained = explain(exc)  # a lost database or Redis connection: one line
        if explained is None:
            raise  # a bug: keep the traceback
        print(f"error: {explained}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
