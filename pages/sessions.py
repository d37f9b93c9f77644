"""Sessions: browse and search your conversations; open, rename, export or delete them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st
from sqlalchemy.orm import Session

from app.context import current_user, show_error
from app.scope import pick
from core import clock, db, services, sessions, text
from core.errors import LedgerError

PAGE_SIZE = 20
MARK = (":orange-background[**", "**]")
CHAT = st.Page(Path(__file__).resolve().with_name("chat.py"), title="Chat", url_path="chat")
S = st.session_state

user = current_user()
r = services.redis_client()
st.title("Sessions")
if flash := S.pop("flash", None):
    st.success(flash)

scope = pick(user, label="Whose sessions", me="My sessions")
query = st.text_input("Search titles and messages", key="query", max_chars=text.MAX_QUERY_CHARS)


def act(change: Callable[[Session], object], done: str) -> None:
    """One change in its own transaction, committed before the rerun (a rerun inside a
    session_scope would roll it back), then a rerun that shows ``done``."""
    with db.session_scope() as dbs:
        change(dbs)
    S["flash"] = done
    S.pop("confirm_delete", None)
    st.rerun()


def manage(row: sessions.Summary) -> None:
    """Rename, export and delete one session (the owner's id comes from the row itself)."""
    new_title = st.text_input("Title", row.title, key=f"title-{row.id}", max_chars=200)
    if st.button("Rename", key=f"rename-{row.id}") and new_title != row.title:
        act(
            lambda d: sessions.rename(d, user_id=row.user_id, session_id=row.id, title=new_title),
            "Renamed.",
        )
    with db.session_scope() as dbs:
        exports = {
            "Markdown": sessions.export_markdown(dbs, r, user_id=row.user_id, session_id=row.id),
            "JSON": sessions.export_json(dbs, r, user_id=row.user_id, session_id=row.id),
        }
    cols = st.columns(3)
    for col, (kind, export) in zip(cols, exports.items(), strict=False):
        col.download_button(
            f"Export {kind}", export.data, export.filename, export.mime, key=f"{kind}-{row.id}"
        )
    if S.get("confirm_delete") != row.id:
        if cols[2].button("Delete…", key=f"delete-{row.id}"):
            S["confirm_delete"] = row.id
            st.rerun()
        return
    st.warning(
        f"Delete “{text.escape_markdown(row.title)}” and its {row.message_count:,} messages? "
        "This cannot be undone; usage figures stay."
    )
    yes, no = st.columns(2)
    if yes.button("Yes, delete", type="primary", key=f"yes-{row.id}"):
        act(
            lambda d: sessions.delete(d, r, user_id=row.user_id, session_id=row.id),
            "Session deleted.",
        )
    if no.button("Cancel", key=f"no-{row.id}"):
        S.pop("confirm_delete", None)
        st.rerun()


def show(
    row: sessions.Summary, title_spans: tuple[text.Span, ...] = (), notes: tuple[str, ...] = ()
) -> None:
    with st.container(border=True):
        left, right = st.columns([5, 1])
        left.markdown(
            "#### "
            + text.highlight_markdown(row.title, title_spans, open_mark=MARK[0], close_mark=MARK[1])
        )
        left.caption(sessions.describe(row, now=clock.now(), with_owner=scope is None))
        for note in notes:
            left.markdown(note)
        right.page_link(CHAT, label="Open", icon="💬", query_params={"session": str(row.id)})
        if right.button("Manage", key=f"manage-{row.id}"):
            S["selected"] = None if S.get("selected") == row.id else row.id
            st.rerun()
        if S.get("selected") == row.id:
            manage(row)


try:
    with db.session_scope() as dbs:
        if query.strip():
            found = sessions.search(dbs, r, user_id=scope, query=query)
            st.caption(found.message)
            for hit in found.hits:
                notes = tuple(
                    f"_{m.role} #{m.index + 1}:_ "
                    + m.snippet.markdown(open_mark=MARK[0], close_mark=MARK[1])
                    for m in hit.messages
                )
                show(hit.session, hit.title_spans, notes)
        else:
            offset = S.get("offset", 0)
            page = sessions.browse(dbs, user_id=scope, limit=PAGE_SIZE, offset=offset)
            if not page.items and offset:  # the list shrank (deletes, another user chosen)
                S["offset"] = 0
                st.rerun()
            if not page.items:
                st.info("No sessions yet. Start a conversation on the Chat page.")
            else:
                st.caption(
                    f"Sessions {offset + 1:,}–{offset + len(page.items):,} of {page.total:,}"
                )
            for row in page.items:
                show(row)
            prev, _, nxt = st.columns([1, 4, 1])
            if prev.button("← Newer", disabled=offset == 0, key="newer"):
                S["offset"] = max(0, offset - PAGE_SIZE)
                st.rerun()
            if nxt.button("Older →", disabled=not page.has_next, key="older"):
                S["offset"] = offset + PAGE_SIZE
                st.rerun()

    if scope is not None:
        with st.expander("Delete old sessions"):
            days = st.number_input("Not used for this many days", 1, 36_500, 90, key="days")
            with db.session_scope() as dbs:
                n = sessions.count_older_than(dbs, user_id=scope, days=int(days))
                st.write(f"{n:,} session(s) had no activity for {int(days)} days.")
                sure = st.checkbox(
                    "I understand they cannot be recovered", key="sure", disabled=n == 0
                )
                if st.button("Delete them", disabled=not sure or n == 0, key="purge"):
                    deleted = sessions.delete_older_than(dbs, r, user_id=scope, days=int(days))
                    st.success(f"Deleted {deleted:,} session(s).")
except LedgerError as exc:
    show_error(exc)
