"""``python -m core <command>``: the operator's and the terminal user's entry point.

The command table: each group module (``services``, ``accounts``, ``demo``, ``chat``) adds its
commands with ``register(subparsers)``. Every command that fails for a reason a person can fix
prints one line, ``error: ...``, and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeAlias

from core.cli import serve as serve_command
from core.cli import services as service_commands
from core.errors import LedgerError
from core.services import explain

Handler = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

# Answered by cli/services.py and cli/serve.py: `make run`'s prepare step then never imports
# the feature groups (the terminal chat, pandas), which would cost it about a second a start.
CORE_COMMANDS = ("check", "migrate", "prepare", "serve")


def _feature_groups() -> list[Callable[[Subparsers], None]]:
    """The groups beyond CORE_COMMANDS, imported only when one of them may be asked for."""
    from core.cli import accounts, chat, demo

    return [
        accounts.register,  # create-admin, reset-password
        demo.register,  # seed-demo
        chat.register,  # chat (the terminal client)
    ]


def build_parser(*, extensions: bool = True) -> argparse.ArgumentParser:
    """All commands; ``extensions=False``: only CORE_COMMANDS."""
    parser = argparse.ArgumentParser(prog="python -m core", description="Ledger's command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    service_commands.register(sub)
    serve_command.register(sub)
    for register in _feature_groups() if extensions else []:
        register(sub)
    return parser


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
        explained = explain(exc)  # a lost database or Redis connection: one line
        if explained is None:
            raise  # a bug: keep the traceback
        print(f"error: {explained}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
