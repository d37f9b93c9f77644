"""``python -m core chat``: the terminal client, on the same stores as the app.

Log in (password from getpass, or LEDGER_PASSWORD for automation), pick a session or start a
new one, and type prompts; replies stream as they arrive. Ctrl-C during a reply stops it and
keeps the partial text (marked interrupted); Ctrl-C or Ctrl-D at the prompt leaves.
Commands at the prompt: ``/new`` starts a new chat, ``/models`` lists the installed models,
``/model NAME`` answers with another one, ``/save`` retries the writes of replies that could
not be saved (Redis or PostgreSQL down when they ended), ``/help`` lists these, ``/quit``
leaves. Any other line starting with ``/word`` is answered here ("unknown command"), never
sent to the model.

A prompt refused because Redis or PostgreSQL is down is kept: Enter on an empty line sends
it again. A reply that could not be saved is retried before the next prompt and on leaving,
as the page does on its next runs; one still not saved then is printed to copy.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import uuid
from typing import TextIO

from core import chat, chat_display, database, history, llm, login, services, sessions
from core.accounts import Identity
from core.errors import EmptyPrompt, LedgerError, ServiceUnavailable
from core.turn import Turn

SHOWN_SESSIONS = 20
SHOWN_HISTORY = 10
COMMANDS = (
    "/new starts a new chat, /again answers the last question again (a new version), "
    "/models lists the models, /model NAME switches, "
    "/save retries replies not saved, /quit leaves. Ctrl-C stops a reply."
)


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


def _pick_session(user: Identity, args: argparse.Namespace, out: TextIO) -> uuid.UUID | None:
    if args.session:
        with database.session_scope() as s:
            return sessions.get_for_owner(s, user_id=user.id, session_id=args.session).id
    if args.new:
        return None
    with database.session_scope() as s:
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
        note = chat_display.status_note(message)
        if note:
            out.write(f"  [{note}]\n")
    if messages:
        out.write("\n")


def _save_pending(pending: list[Turn], out: TextIO, *, quiet: bool = False) -> None:
    """Retry the writes of replies that could not be saved (as the page does on its next
    runs); say what was saved, and unless ``quiet`` what is still not."""
    saved = [turn for turn in pending if turn.save_again()]
    pending[:] = [turn for turn in pending if turn not in saved]
    if saved:
        what = "1 reply" if len(saved) == 1 else f"{len(saved)} replies"
        out.write(f"[saved {what} that could not be saved earlier]\n")
    if pending and not quiet:
        for turn in pending:
            print(f"warning: still not saved: {turn.storage_error}", file=sys.stderr)


def _leave(pending: list[Turn], out: TextIO) -> int:
    """Last try at saving what is pending; what still is not saved is printed to copy."""
    _save_pending(pending, out, quiet=True)
    for turn in pending:
        print(
            f"warning: this reply is NOT saved ({turn.storage_error}); copy it from here:\n"
            f"{turn.text}",
            file=sys.stderr,
        )
    return 0


def _stream(turn: Turn, out: TextIO) -> None:
    """Print the reply as it arrives; Ctrl-C stops it (the partial reply is kept)."""
    out.write("ledger> ")
    stopped = False
    try:
        for event in turn:
            out.write(event if isinstance(event, str) else f"\n{event.markdown(max_rows=20)}\n")
            out.flush()
    except KeyboardInterrupt:
        stopped = True
    except LedgerError as exc:
        out.write("\n")
        print(f"error: {exc}", file=sys.stderr)
    finally:
        turn.close()
    if stopped:
        kept = "kept" if turn.storage_error else "saved"
        out.write(f"\n[stopped: the partial reply is {kept}]")
    out.write("\n")
    if turn.status == "truncated":
        out.write(f"[{turn.error}]\n")
    if turn.stats is not None:
        out.write(f"[{chat_display.caption(turn.stats)}]\n")


def _installed(backend: llm.Backend) -> list[str]:
    try:
        return llm.installed_models(backend)
    except LedgerError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        return []


def _command(line: str, model: str, backend: llm.Backend, out: TextIO) -> str:
    """A ``/word`` line other than /new, /save and /quit: answered here, never sent. Returns
    the model to answer with from now on."""
    name, _, rest = line[1:].partition(" ")
    if name == "models":
        installed = _installed(backend)
        for m in llm.model_choices(installed, backend.default_model):
            out.write(f"  {m}{'  (answering)' if m == model else ''}\n")
        return model
    if name == "model":
        wanted = rest.strip()
        installed = llm.model_choices(_installed(backend), backend.default_model)
        if not wanted:
            out.write(f"Answering with {model}. /model NAME switches; /models lists them.\n")
        elif wanted in installed:
            out.write(f"Answering with {wanted} from now on.\n")
            return wanted
        else:
            out.write(f"{wanted} is not installed here. Installed: {', '.join(installed)}.\n")
        return model
    if name != "help":
        out.write(f"Unknown command /{name} (not sent to the model). ")
    out.write(COMMANDS + "\n")
    return model


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    try:
        username = args.username or _ask("Username: ", out).strip()
        password = os.environ.get("LEDGER_PASSWORD") or getpass.getpass("Password: ")
    except (EOFError, KeyboardInterrupt):
        out.write("\n")
        return 1
    with database.session_scope() as s:  # committed whatever the outcome: failures count
        result = login.attempt(s, services.redis_client(), username=username, password=password)
    if result.error is not None:
        raise result.error
    assert result.identity is not None
    user = result.identity
    backend = llm.get_backend()
    installed = _installed(backend)
    model = args.model or llm.preferred_model(installed, backend.default_model)
    out.write(f"Signed in as {user.display_name}. {llm.serving_note(backend, model)}\n")
    if not args.model and (missing := llm.missing_model_note(installed, backend.default_model)):
        out.write(missing + "\n")
    try:
        session_id = _pick_session(user, args, out)
    except (EOFError, KeyboardInterrupt):
        out.write("\n")
        return 0
    if session_id is not None:
        _show_history(session_id, out)
    out.write(f"Type a question; {COMMANDS}\n")
    pending: list[Turn] = []  # finished turns whose reply or usage row is not saved
    unsent: str | None = None  # a prompt refused because a store was down

    while True:
        try:
            line = _ask("you> ", out)
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return _leave(pending, out)
        command = line.strip()
        if command in ("/quit", "/exit"):
            return _leave(pending, out)
        if command == "/new":
            session_id = None
            out.write("New chat.\n")
            continue
        if command == "/save":
            _save_pending(pending, out)
            if not pending:
                out.write("[nothing is waiting to be saved]\n")
            continue
        if command == "/again":
            if session_id is None:
                out.write("[nothing to answer again yet: ask a question first]\n")
                continue
            try:
                turn = chat.regenerate(
                    database.get_sessionmaker(), services.redis_client(), backend,
                    user_id=user.id, session_id=session_id, model=model,
                )  # fmt: skip
            except LedgerError as exc:
                print(f"error: {exc}", file=sys.stderr)
                continue
            out.write(f"[version {turn.version} of the reply, from {turn.model}]\n")
            _stream(turn, out)
            if turn.storage_error:
                pending.append(turn)
            continue
        if re.match(r"/[A-Za-z]\w*(\s|$)", command):
            model = _command(command, model, backend, out)
            continue
        if not command and unsent is not None:
            line, unsent = unsent, None  # Enter on an empty line: send the refused one again
        if pending:
            _save_pending(pending, out, quiet=True)
        try:
            turn = chat.turn(
                database.get_sessionmaker(),
                services.redis_client(),
                backend,
                user_id=user.id,
                session_id=session_id,
                prompt=line,
                model=model,
            )
        except EmptyPrompt:
            continue
        except ServiceUnavailable as exc:  # nothing was stored: keep the prompt for a retry
            unsent = line
            print(f"error: {exc}", file=sys.stderr)
            out.write("[not sent: press Enter on an empty line to send it again]\n")
            continue
        except LedgerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            continue
        unsent = None
        session_id = turn.session_id
        _stream(turn, out)
        if turn.storage_error:
            pending.append(turn)
            print(
                f"warning: {turn.storage_error} Ledger tries again before your next prompt "
                "and when you leave; /save tries now.",
                file=sys.stderr,
            )
