"""The admin's "whose data" picker, shared by the sessions and usage pages."""

from __future__ import annotations

import uuid

import streamlit as st

from app.page import write
from core import access
from core.accounts import Identity

ALL = "all"


def pick(user: Identity, *, label: str, me: str) -> uuid.UUID | None:
    """The ``user_id`` for core queries: analysts always get their own; admins choose
    everyone (None, the first view: what an administrator opens these pages for), themselves
    or one user."""
    if not user.is_admin:
        return access.scope(user)
    people: dict[uuid.UUID | str, str] = {c.id: c.label for c in write(access.user_choices)}
    options: list[uuid.UUID | str] = [ALL, user.id, *[uid for uid in people if uid != user.id]]
    names: dict[uuid.UUID | str, str] = {**people, user.id: me, ALL: "All users"}
    whose = st.selectbox(label, options, format_func=lambda o: names[o], key="whose")
    if whose == ALL:
        return access.scope(user, all_users=True)
    return access.scope(user, user_id=whose if isinstance(whose, uuid.UUID) else None)
