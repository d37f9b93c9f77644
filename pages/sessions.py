"""Sessions: browse and search your conversations; open, rename, export or delete them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from app.page import apply, current_user, header, show_error, store, write
from app.scope import pick
from core import access, clock, export, search, sessions, text
from core.errors import LedgerError

PAGE_SIZE = 20
MARK = {"open_mark": ":orange-background[**", "close_mark": "**]"}
CHAT = st.Page(Path(__file__).resolve().with_name("chat.py"), title="Chat", url_path="chat")
S = st.session_state

user = current_user()
r = store()
header("Sessions", "Your conversations, newest first: search, open, rename, export or delete.")
scope = pick(user, label="Whose sessions", me="My sessions")
query = st.text_input("Search titles and messages", key="query")  # core says what is too long


def exporter(sid: uuid.UUID, ext: str) -> Callable[[], bytes]:
    """The file, built only when its button is clicked (on a Streamlit worker thread): a
    10,000-message session takes about half a second to export, too long for every rerun."""
    return lambda: write(lambda d: access.export(d, r, actor=user, session_id=sid, ext=ext)).data


def manage(row: sessions.Summary) -> None:
    """Rename, export and delete one session: the user's own, or for admins anyone's."""
    sid = row.id
    new_title = st.text_input("Title", row.title, key=f"title-{sid}", max_chars=200)
    if st.button("Rename", key=f"rename-{sid}") and new_title != row.title:
        apply(lambda d: access.rename(d, actor=user, session_id=sid, title=new_title), "Renamed.")
    cols = st.columns(3)
    for col, kind in zip(cols, export.EXPORT_KINDS, strict=False):
        col.download_button(
            f"Export {kind.label}",
            exporter(sid, kind.ext),
            kind.filename(row),
            kind.mime,
            key=f"{kind.label}-{sid}",
            on_click="ignore",
        )
    if S.get("confirm_delete") != sid:
        if cols[2].button("Delete…", key=f"delete-{sid}"):
            S["confirm_delete"] = sid
            st.rerun()
        return
    st.warning(sessions.delete_warning(row))
    yes, no = st.columns(2)
    if yes.button("Yes, delete", type="primary", key=f"yes-{sid}"):
        apply(
            lambda d: access.delete(d, r, actor=user, session_id=sid),
            "Session deleted.",
            then=lambda _: S.pop("confirm_delete", None),
        )
    if no.button("Cancel", key=f"no-{sid}"):
        S.pop("confirm_delete", None)
        st.rerun()


def show(
    row: sessions.Summary, spans: tuple[text.Span, ...] = (), notes: tuple[str, ...] = ()
) -> None:
    with st.container(border=True):
        left, right = st.columns([5, 1])
        left.markdown("#### " + text.highlight_markdown(row.title, spans, **MARK))
        left.caption(sessions.describe(row, now=clock.now(), with_owner=scope is None))
        for note in notes:
            left.markdown(note)
        right.page_link(CHAT, label="Open", icon="💬", query_params={"session": str(row.id)})
        if right.button("Manage", key=f"manage-{row.id}"):
            S["selected"] = None if S.get("selected") == row.id else row.id
            st.rerun()
        if S.get("selected") == row.id:
            manage(row)


def listing() -> None:
    if query.strip():
        found = write(lambda d: search.find(d, r, user_id=scope, query=query))
        st.caption(found.message)
        for hit in found.hits:
            show(hit.session, hit.title_spans, search.match_notes(hit, **MARK))
        return
    offset = S.get("offset", 0)
    page = write(lambda d: sessions.browse(d, user_id=scope, limit=PAGE_SIZE, offset=offset))
    if not page.items and offset:  # the list shrank (deletes, another user chosen)
        S["offset"] = 0
        st.rerun()
    if not page.items:
        st.info("No sessions yet. Start a conversation on the Chat page.")
    else:
        st.caption(f"Sessions {offset + 1:,}–{offset + len(page.items):,} of {page.total:,}")
    for row in page.items:
        show(row)
    prev, _, nxt = st.columns([1, 4, 1])
    if prev.button("← Newer", disabled=offset == 0, key="newer"):
        S["offset"] = max(0, offset - PAGE_SIZE)
        st.rerun()
    if nxt.button("Older →", disabled=not page.has_next, key="older"):
        S["offset"] = offset + PAGE_SIZE
        st.rerun()


def purge(owner: uuid.UUID) -> None:
    with st.expander("Delete old sessions"):
        days = int(st.number_input("Not used for this many days", 1, 36_500, 90, key="days"))
        n = write(lambda d: sessions.count_older_than(d, user_id=owner, days=days))
        st.write(f"{n:,} session(s) had no activity for {days} days.")
        sure = st.checkbox("I understand they cannot be recovered", key="sure", disabled=n == 0)
        if st.button("Delete them", disabled=not sure or n == 0, key="purge"):
            apply(
                lambda d: sessions.delete_older_than(d, r, user_id=owner, days=days),
                lambda deleted: f"Deleted {deleted:,} session(s).",
            )


try:
    listing()
    if scope is not None:  # one person's sessions; never a bulk delete across all users
        purge(scope)
except LedgerError as exc:
    show_error(exc)
