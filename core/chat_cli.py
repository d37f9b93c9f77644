"""``python -m core chat``: the terminal client, on the same stores as the app.

Log in (password from getpass, or LEDGER_PASSWORD for automation), pick a session or start a
new one, and type prompts; replies stream as they arrive. Ctrl-C during a reply stops it and
keeps the partial text (marked interrupted); Ctrl-C or Ctrl-D at the prompt leaves.
Commands at the prompt: ``/new`` starts a new chat, ``/quit`` leaves.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import uuid
from typing import TextIO

from core import accounts, chat, db, history, llm, services, sessions
from core.errors import EmptyPrompt, LedgerError

SHOWN_SESSIONS = 20
SHOWN_HISTORY = 10


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("chat", help="chat in the terminal (same history as the app)")
    p.add_argument("--username", "-u", help="asked for when omitted")
    p.add_argument("--session", help="continue this session id")
    p.add_argument("--new", action="store_true", help="start a new chat without asking")
    p.add_argument("--model", help="model name (default: the backend's default)")
    p.set_defaults(handler=run)


def _ask(prompt: str, out: TextIO) -> str:
    out.write(prompt)
    out.flush()
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def _pick_session(
    user: accounts.Identity, args: argparse.Namespace, out: TextIO
) -> uuid.UUID | None:
    if args.session:
        with db.session_scope() as s:
            return sessions.get_for_owner(s, user_id=user.id, session_id=args.session).id
    if args.new:
        return None
    with db.session_scope() as s:
        rows = sessions.list_for_owner(s, user_id=user.id, limit=SHOWN_SESSIONS)
        listed = [(r.id, r.title, r.message_count, r.updated_at) for r in rows]
    if not listed:
        return None
    out.write("Your sessions, most recent first:\n")
    for number, (_, title, count, updated) in enumerate(listed, start=1):
        out.write(f"  {number:>2}. {title}  ({count} messages, {updated:%Y-%m-%d %H:%M} UTC)\n")
    while True:
        answer = _ask("Open which one? [number, Enter = new chat]: ", out).strip()
        if not answer:
            return None
        if answer.isdigit() and 1 <= int(answer) <= len(listed):
            return listed[int(answer) - 1][0]
        out.write(f"Type a number from 1 to {len(listed)}, or press Enter.\n")


def _show_history(session_id: uuid.UUID, out: TextIO) -> None:
    messages = history.read_last(services.redis_client(), session_id=session_id, n=SHOWN_HISTORY)
    for message in messages:
        who = "you" if message["role"] == "user" else "ledger"
        out.write(f"{who}> {message['content']}\n")
        note = chat.status_note(message)
        if note:
            out.write(f"  [{note}]\n")
    if messages:
        out.write("\n")


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    try:
        username = args.username or _ask("Username: ", out).strip()
        password = os.environ.get("LEDGER_PASSWORD") or getpass.getpass("Password: ")
    except (EOFError, KeyboardInterrupt):
        out.write("\n")
        return 1
    with db.session_scope() as s:
        user = accounts.authenticate(s, username=username, password=password)
    backend = llm.get_backend()
    model = args.model or backend.default_model
    out.write(f"Signed in as {user.display_name}. {llm.serving_note(backend, model)}\n")
    try:
        session_id = _pick_session(user, args, out)
    except (EOFError, KeyboardInterrupt):
        out.write("\n")
        return 0
    if session_id is not None:
        _show_history(session_id, out)
    out.write("Type a question; /new starts a new chat, /quit leaves. Ctrl-C stops a reply.\n")

    while True:
        try:
            line = _ask("you> ", out)
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return 0
        command = line.strip()
        if command in ("/quit", "/exit"):
            return 0
        if command == "/new":
            session_id = None
            out.write("New chat.\n")
            continue
        try:
            turn = chat.turn(
                db.get_sessionmaker(),
                services.redis_client(),
                backend,
                user_id=user.id,
                session_id=session_id,
                prompt=line,
                model=model,
            )
        except EmptyPrompt:
            continue
        except LedgerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            continue
        session_id = turn.session_id
        out.write("ledger> ")
        try:
            for text in turn:
                out.write(text)
                out.flush()
        except KeyboardInterrupt:
            turn.close()
            out.write("\n[stopped: the partial reply is saved]")
        except LedgerError as exc:
            out.write("\n")
            print(f"error: {exc}", file=sys.stderr)
        finally:
            turn.close()
        out.write("\n")
        if turn.stats is not None:
            out.write(f"[{chat.caption(turn.stats)}]\n")
        if turn.storage_error:
            print(f"warning: {turn.storage_error}", file=sys.stderr)
