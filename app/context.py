"""What every page needs from the router: the signed-in identity, a uniform header, error
display, notices that outlive a rerun, and one way to write and then rerun.

The router (ui.py) puts the signed-in ``core.accounts.Identity`` in
``st.session_state["identity"]`` before it runs a gated page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st
from sqlalchemy.orm import Session

from core import db
from core.accounts import Identity
from core.errors import LedgerError

IDENTITY_KEY = "identity"
NOTICE_KEY = "_ledger_notice"  # (kind, text, until): a message for the next page
NOTICE_SECONDS = 5.0

T = TypeVar("T")
PROMPT_KEY = "chat_prompt"  # the chat input's key: the router offers an unsent prompt back
UNSAVED_KEY = "_ledger_unsaved_turns"  # finished chat turns whose writes failed
UNSENT_KEY = "_ledger_unsent_prompt"  # a prompt typed while storage was down
TURN_KEY = "turn"  # the chat page's latest turn
# The prompt the chat page has stored, until its run ends normally: a run cut short by a rerun
# leaves the chat input's value behind, and it must not be offered back as "not sent".
CONSUMED_KEY = "_ledger_prompt_consumed"
STORAGE_RECHECK_SECONDS = 3.0


def current_user() -> Identity:
    """The signed-in user; a page reached without one stops with a message."""
    identity = st.session_state.get(IDENTITY_KEY)
    if not isinstance(identity, Identity):
        st.warning("Please log in.")
        st.stop()
    return identity


def require_admin() -> Identity:
    identity = current_user()
    if not identity.is_admin:
        st.error("This page is for administrators.")
        st.stop()
    return identity


def header(title: str, caption: str) -> None:
    """Every page starts the same way: its title (the name in the sidebar), one line saying
    what it is for, then any notice left by the previous run."""
    st.title(title)
    st.caption(caption)
    show_notice()


def show_error(exc: LedgerError) -> None:
    """One clear message for a failure the user can act on."""
    st.error(str(exc))


# --- notices -------------------------------------------------------------------------------


def set_notice(kind: str, text: str) -> None:
    """A message for the next run ("Renamed.", "You are logged out.").

    It lives a few seconds rather than one run: after a cookie change the login library's
    component reports the new cookies and Streamlit runs the page once more, which would
    swallow a show-once message.
    """
    st.session_state[NOTICE_KEY] = (kind, text, time.monotonic() + NOTICE_SECONDS)


def show_notice() -> None:
    notice = st.session_state.get(NOTICE_KEY)
    if not notice:
        return
    kind, text, until = notice
    if time.monotonic() > until:
        del st.session_state[NOTICE_KEY]
        return
    show: Callable[[str], Any] = {"success": st.success, "warning": st.warning}.get(kind, st.info)
    show(text)


# --- writes --------------------------------------------------------------------------------


def write(change: Callable[[Session], T]) -> T:
    """Run ``change`` in its own transaction and commit it.

    Keep Streamlit calls out of the transaction: st.rerun(), st.switch_page() and st.stop()
    raise, and so can any st.* call when the user clicks meanwhile; raised inside
    ``session_scope`` they roll the change back (tests/unit/test_page_rules.py).
    """
    with db.session_scope() as session:
        return change(session)


def apply(
    change: Callable[[Session], T],
    done: str | Callable[[T], str],
    *,
    then: Callable[[T], object] | None = None,
) -> None:
    """One user action: commit ``change``, then rerun the page with ``done`` as a notice
    (a string, or made from the result: "Deleted 3 sessions.").

    A refusal (``LedgerError``) is shown and nothing changes. ``then`` receives the result
    after the commit (to keep something for the next run, such as a one-time password).
    """
    try:
        result = write(change)
    except LedgerError as exc:
        show_error(exc)
        return
    if then is not None:
        then(result)
    set_notice("success", done if isinstance(done, str) else done(result))
    st.rerun()


def keep_unsaved(turn: Any) -> None:
    """Remember a finished chat turn whose reply or usage row could not be written."""
    st.session_state.setdefault(UNSAVED_KEY, []).append(turn)


def _unsaved() -> list[Any]:
    """Finished turns with writes still to do: those remembered, and the chat page's latest
    turn (a rerun can end the reply's run before the page could remember it)."""
    turns = list(st.session_state.get(UNSAVED_KEY) or [])
    latest = st.session_state.get(TURN_KEY)
    if getattr(latest, "pending", False) and all(t is not latest for t in turns):
        turns.append(latest)
    return turns


def save_unsaved() -> None:
    """Retry the writes of unsaved turns (the router calls this once storage answers)."""
    turns = _unsaved()
    left = [turn for turn in turns if not turn.save_again()]
    saved = len(turns) - len(left)
    st.session_state[UNSAVED_KEY] = left
    if saved:
        st.toast(
            f"Saved {saved} reply that could not be saved earlier."
            if saved == 1
            else f"Saved {saved} replies that could not be saved earlier."
        )


def offer_back_unsaved() -> None:
    """While storage is down: the prompt just typed and replies not saved yet, to copy; the
    page comes back by itself once storage answers (no reload: it would lose them)."""
    typed = st.session_state.get(PROMPT_KEY)
    if isinstance(typed, str) and typed.strip() and typed != st.session_state.get(CONSUMED_KEY):
        st.session_state[UNSENT_KEY] = typed
    unsent = st.session_state.get(UNSENT_KEY)
    if unsent:
        with st.expander("Your prompt (not sent): copy it from here", expanded=True):
            st.code(unsent, language=None, wrap_lines=True)
    latest = st.session_state.get(TURN_KEY)
    if latest is not None and not latest.wait(0):  # its run is ending on another thread
        latest.cancel()
        latest.wait(timeout=5)
    for turn in _unsaved():
        with st.expander("A reply not saved yet: it is saved when storage is back", expanded=True):
            st.code(turn.text, language=None, wrap_lines=True)
    _watch_storage()


@st.fragment(run_every=STORAGE_RECHECK_SECONDS)
def _watch_storage() -> None:
    from app import auth

    if auth.startup_problem() is None:
        st.rerun(scope="app")
    st.caption(
        f"Checking again every {STORAGE_RECHECK_SECONDS:g} s: this page comes back by itself, "
        "with anything not yet saved."
    )


def take_unsent() -> str | None:
    """On the chat page: a prompt that storage refused earlier, returned when the user
    chooses to send it now."""
    unsent = st.session_state.get(UNSENT_KEY)
    if not unsent:
        return None
    with st.container(border=True):
        st.caption("Not sent while storage was down:")
        st.code(unsent, language=None, wrap_lines=True)
        send, drop = st.columns(2)
        if send.button("Send it now", key="send_unsent", type="primary"):
            del st.session_state[UNSENT_KEY]
            return str(unsent)
        if drop.button("Discard", key="drop_unsent"):
            del st.session_state[UNSENT_KEY]
            st.rerun()
    return None
