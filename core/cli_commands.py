"""Registry of the CLI's feature commands.

Each feature module that offers a command defines ``register(subparsers)`` and is listed here,
so ``core.cli`` stays small and a command lives next to the code it drives.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from core import accounts_cli, chat_cli, demo

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

REGISTRARS: list[Registrar] = [
    accounts_cli.register,  # create-admin, reset-password
    demo.register,  # seed-demo
    chat_cli.register,  # chat (the terminal client)
]
