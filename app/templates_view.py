"""Prompt templates on the chat page: pick one (shipped or the analyst's own), fill its blanks,
ask; save a template of one's own, delete one (``core.templates``)."""

from __future__ import annotations

import uuid

import streamlit as st

from app.page import apply, read, show_error
from core import templates
from core.accounts import Identity
from core.errors import LedgerError

PICK_KEY = "template_pick"
FIELD_KEY = "template_field"
FORM_KEYS = ("template_name", "template_body")


def picker(user: Identity) -> str | None:
    """The "Templates" section; the filled prompt when "Ask" is pressed, else None."""
    with st.expander("Templates", icon=":material/description:"):
        try:
            found = read(lambda d: templates.available(d, user_id=user.id))
        except LedgerError as exc:
            show_error(exc)
            return None
        labels = [t.name + ("" if t.shipped else " (yours)") for t in found]
        index = st.selectbox(
            "Template", range(len(found)), format_func=lambda i: labels[i], key=PICK_KEY
        )
        chosen = found[int(index or 0)]
        st.text(chosen.body)  # plain: the blanks as written, no Markdown
        values = {
            name: st.text_input(name.replace("_", " ").capitalize(), key=f"{FIELD_KEY}-{name}")
            for name in chosen.fields
        }
        ask = st.button("Ask with this template", type="primary", key="template_ask")
        if chosen.id is not None:
            _delete_button(user, chosen.id, chosen.name)
        _save_form(user)
        if ask:
            try:
                return templates.fill(chosen, values)
            except LedgerError as exc:
                show_error(exc)
    return None


def _delete_button(user: Identity, template_id: uuid.UUID, name: str) -> None:
    if st.button(f"Delete {name!r}", key=f"template_delete-{template_id}"):
        apply(
            lambda d: templates.remove(d, user_id=user.id, template_id=template_id),
            f"Template {name!r} deleted.",
            then=lambda _: st.session_state.pop(PICK_KEY, None),
        )


def _save_form(user: Identity) -> None:
    with st.form("template_save", clear_on_submit=False, border=True):
        st.caption("A template of your own: write blanks as {company}, {period}, ...")
        name = st.text_input("Name", max_chars=templates.MAX_NAME, key="template_name")
        body = st.text_area("Text", key="template_body")
        if st.form_submit_button("Save template"):
            apply(
                lambda d: templates.save(d, user_id=user.id, name=name, body=body),
                lambda saved: f"Template {saved.name!r} saved.",
                then=lambda _: [st.session_state.pop(k, None) for k in FORM_KEYS],
            )
