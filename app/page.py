"""What every page needs from the router: the signed-in identity, a uniform header, error
display, notices that outlive a rerun, and the one way pages reach storage: ``read`` and
``write`` hand a core function its database session, ``store()`` its Redis client.

The router (router.py) puts the signed-in ``core.accounts.Identity`` in
``st.session_state["identity"]`` before it runs a gated page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd
import redis
import streamlit as st
from sqlalchemy.orm import Session

from core import cells, database, services
from core.accounts import Identity
from core.errors import LedgerError

IDENTITY_KEY = "identity"
NOTICE_KEY = "_ledger_notice"  # (kind, text, until): a message for the next page
NOTICE_SECONDS = 5.0

T = TypeVar("T")


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


def table(frame: pd.DataFrame, **options: Any) -> None:
    """Every table a page shows: ``st.dataframe`` over a copy whose text cells cannot run as
    formulas in a spreadsheet, since its toolbar downloads what it shows as CSV
    (``core.cells``). Pages call this, never st.dataframe (tests/unit/test_page_rules.py)."""
    st.dataframe(cells.inert_frame(frame), **options)


def show_error(exc: LedgerError) -> None:
    """One clear message for a failure the user can act on."""
    st.error(str(exc))


# --- notices -------------------------------------------------------------------------------


LOGIN_VIEW = "login view"  # where a notice for the login form goes, whatever the URL


def set_notice(kind: str, text: str, *, where: str | None = None) -> None:
    """A message for the next run of a page ("Renamed.", "You are logged out.").

    ``where`` is the page it belongs to: by default the one this run shows; ``LOGIN_VIEW``
    for the login form (after Logout or registration). Another page never shows it: a
    "Session deleted." must not follow the analyst to the Usage page.
    It lives a few seconds rather than one run: after a cookie change the login library's
    component reports the new cookies and Streamlit runs the page once more, which would
    swallow a show-once message.
    """
    page = where or st.session_state.get("page", "")
    st.session_state[NOTICE_KEY] = (kind, text, time.monotonic() + NOTICE_SECONDS, page)


def drop_notice() -> None:
    """Forget the notice (something newer says more: a failed login after "logged out")."""
    st.session_state.pop(NOTICE_KEY, None)


def show_notice(where: str | None = None) -> None:
    """Show the notice left for this page (``where``: by default the one this run shows)."""
    notice = st.session_state.get(NOTICE_KEY)
    if not notice:
        return
    kind, text, until, page = notice
    if time.monotonic() > until or page != (where or st.session_state.get("page", "")):
        drop_notice()
        return
    show: Callable[[str], Any] = {"success": st.success, "warning": st.warning}.get(kind, st.info)
    show(text)


# --- storage -------------------------------------------------------------------------------


def store() -> redis.Redis:
    """The Redis client core functions take (chat history)."""
    return services.redis_client()


def sessions_factory() -> Callable[[], Session]:
    """What a chat turn opens its short transactions with."""
    return database.get_sessionmaker()


def read(query: Callable[[Session], T]) -> T:
    """Run ``query`` outside a transaction (autocommit): reads only, one round trip each."""
    with database.read_scope() as session:
        return query(session)


def write(change: Callable[[Session], T]) -> T:
    """Run ``change`` in its own transaction and commit it.

    Keep Streamlit calls out of the transaction: st.rerun(), st.switch_page() and st.stop()
    raise, and so can any st.* call when the user clicks meanwhile; raised inside
    ``session_scope`` they roll the change back (tests/unit/test_page_rules.py).
    """
    with database.session_scope() as session:
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


def delete_with_confirmation(
    column: Any,
    what: str,
    item: object,
    name: str,
    change: Callable[[Session], object],
    done: str,
) -> None:
    """A "Delete" button (in ``column``) that asks first: one item at a time waits for its
    "Yes, delete it"; chats that use the item lose it."""
    key = f"confirm_{what}"
    if column.button(f"Delete {what}", key=f"del-{what}-{item}"):
        st.session_state[key] = item
    if st.session_state.get(key) == item:
        st.warning(f"Delete {name}? Chats that use it lose it; this cannot be undone.")
        if st.button("Yes, delete it", type="primary", key=f"yes-{what}-{item}"):
            apply(change, done, then=lambda _: st.session_state.pop(key, None))
