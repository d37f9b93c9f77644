"""Chat recovery while storage is down: nothing the analyst typed or was shown is lost.

A prompt refused because Redis or PostgreSQL is down is offered back (``take_unsent``); a
finished reply whose writes failed is kept in the browser session and saved as soon as storage
answers (``keep_unsaved``, ``save_unsaved``); the page that replaces the app while storage is
down shows both to copy and comes back by itself (``offer_back_unsaved``).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core import readiness

PROMPT_KEY = "chat_prompt"  # the chat input's key: the router offers an unsent prompt back
UNSAVED_KEY = "_ledger_unsaved_turns"  # finished chat turns whose writes failed
UNSENT_KEY = "_ledger_unsent_prompt"  # a prompt typed while storage was down
TURN_KEY = "turn"  # the chat page's latest turns (two when two models answered side by side)
# The prompt the chat page has stored, until its run ends normally: a run cut short by a rerun
# leaves the chat input's value behind, and it must not be offered back as "not sent".
CONSUMED_KEY = "_ledger_prompt_consumed"
STORAGE_RECHECK_SECONDS = 3.0


def keep_unsaved(turn: Any) -> None:
    """Remember a finished chat turn whose reply or usage row could not be written."""
    st.session_state.setdefault(UNSAVED_KEY, []).append(turn)


def latest_turns() -> list[Any]:
    """The chat page's latest turns (the one reply, or a comparison's two)."""
    latest = st.session_state.get(TURN_KEY)
    return list(latest) if isinstance(latest, list | tuple) else [latest] if latest else []


def _unsaved() -> list[Any]:
    """Finished turns with writes still to do: those remembered, and the chat page's latest
    turns (a rerun can end the reply's run before the page could remember it)."""
    turns = list(st.session_state.get(UNSAVED_KEY) or [])
    for latest in latest_turns():
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
    for latest in latest_turns():
        if not latest.wait(0):  # its run is ending on another thread
            latest.cancel()
            latest.wait(timeout=5)
    for turn in _unsaved():
        with st.expander("A reply not saved yet: it is saved when storage is back", expanded=True):
            st.code(turn.text, language=None, wrap_lines=True)
    _watch_storage()


@st.fragment(run_every=STORAGE_RECHECK_SECONDS)
def _watch_storage() -> None:
    if readiness.blocking_problem() is None:
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
