"""``python -m core create-admin`` and ``python -m core reset-password USERNAME``.

Passwords are never taken from the command line (it ends up in shell history and ``ps``):
they are typed twice at a prompt, or read from LEDGER_ADMIN_PASSWORD (create-admin) /
LEDGER_NEW_PASSWORD (reset-password) for automation. ``reset-password --one-time`` prints a
generated password once instead; the user must replace it at the next login.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from core import accounts, admin, database, readiness
from core.errors import InvalidInput

ADMIN_PASSWORD_ENV = "LEDGER_ADMIN_PASSWORD"  # noqa: S105 (a variable name)
NEW_PASSWORD_ENV = "LEDGER_NEW_PASSWORD"  # noqa: S105 (a variable name)


def _password_from(env_name: str, *, username: str) -> str:
    """The new password: from ``env_name`` if set, else typed twice at a prompt."""
    value = os.environ.get(env_name)
    if value is not None:
        return accounts.validate_password(value, username=username)
    if not sys.stdin.isatty():
        raise InvalidInput(
            "password", f"no terminal to ask for the password: set {env_name} instead."
        )
    for _ in range(3):
        first = getpass.getpass("New password (at least 12 characters): ")
        second = getpass.getpass("Repeat it: ")
        try:
            return accounts.validate_password(first, username=username, confirm=second)
        except InvalidInput as exc:
            print(exc, file=sys.stderr)
    raise InvalidInput("password", "no valid password after three tries; nothing was changed.")


def _create_admin(args: argparse.Namespace) -> int:
    """Create an administrator account."""
    username = accounts.validate_username(args.username)
    email = accounts.validate_email(args.email or f"{username.lower()}@localhost.localdomain")
    display_name = accounts.validate_display_name(args.display_name or username)
    readiness.require_schema(database.get_engine())
    with database.session_scope() as session:
        if accounts.get_by_username(session, username=username) is not None:
            raise InvalidInput("username", f"a user named {username!r} already exists.")
    password = _password_from(ADMIN_PASSWORD_ENV, username=username)
    with database.session_scope() as session:
        user = admin.create_admin(
            session, username=username, email=email, display_name=display_name, password=password
        )
        admins = admin.count_enabled_admins(session)
    print(f"created administrator {user.username} <{user.email}> ({admins} enabled admin(s))")
    return 0


def _reset_password(args: argparse.Namespace) -> int:
    """Set a user's password (or a one-time one), lift any lockout, end their logins."""
    readiness.require_schema(database.get_engine())
    with database.session_scope() as session:
        user = accounts.get_by_username(session, username=args.username)
        if user is None:
            raise InvalidInput("username", f"no user named {args.username.strip()[:64]!r}.")
        username = user.username
    password = None if args.one_time else _password_from(NEW_PASSWORD_ENV, username=username)
    with database.session_scope() as session:
        user, one_time = admin.operator_reset_password(
            session, username=username, password=password
        )
    if one_time is not None:
        print(f"one-time password for {username} (shown once; it must be changed at login):")
        print(one_time)
    else:
        print(f"password of {username} changed; their other logins have ended")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "create-admin",
        help="create an administrator account",
        description=f"Create an administrator. The password is prompted for twice, or read "
        f"from {ADMIN_PASSWORD_ENV}.",
    )
    p.add_argument("--username", default="admin", help="login name (default: admin)")
    p.add_argument("--email", help="email address (default: <username>@localhost.localdomain)")
    p.add_argument("--display-name", help="name shown in the app (default: the username)")
    p.set_defaults(handler=_create_admin)

    p = sub.add_parser(
        "reset-password",
        help="set a user's password and lift a lockout",
        description=f"Set a user's password (prompted twice, or read from "
        f"{NEW_PASSWORD_ENV}); --one-time prints a generated one instead. Any lockout is "
        "lifted and the user's logins end.",
    )
    p.add_argument("username")
    p.add_argument(
        "--one-time",
        action="store_true",
        help="generate a password, print it once; the user must change it at login",
    )
    p.set_defaults(handler=_reset_password)
