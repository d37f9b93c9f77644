"""Admin: every account with its usage; disable/enable, role, password reset, unlock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from app.page import apply, header, require_admin, show_error, table, write
from core import admin, clock
from core.errors import LedgerError
from core.models import ROLES
from core.text import escape_markdown

ONE_TIME = "_admin_one_time"  # (username, password): shown once, on the next run
CONFIRM_RESET = "_admin_confirm_reset"  # the account whose reset waits for "Yes, reset it"

me = require_admin()
header("Admin", "Every account with its usage: enable or disable, change roles, reset passwords.")

if shown := st.session_state.pop(ONE_TIME, None):
    name, password = shown
    st.warning(
        f"One-time password for **{escape_markdown(name)}**, shown only now. Hand it over "
        "safely: they must choose a new password when they log in."
    )
    st.code(password, language=None)


def act(
    fn: Callable[..., Any], done: str, then: Callable[[Any], object] | None = None, **kw: Any
) -> None:
    """One admin action as ``me`` (core checks again, in the database, that I am an admin)."""
    apply(lambda session: fn(session, actor_id=me.id, **kw), done, then=then)


try:
    users = write(lambda d: admin.list_users(d, actor_id=me.id))
except LedgerError as exc:
    show_error(exc)
    st.stop()
now = clock.now()
count = st.column_config.NumberColumn(format="localized", width="small")
table(
    admin.for_display(admin.users_frame(users, now=now)),
    hide_index=True,
    width="stretch",
    column_config={
        "role": st.column_config.TextColumn(width="small"),
        "last login": st.column_config.TextColumn("last login (UTC)"),
        "email": st.column_config.TextColumn(width="medium"),
        "created": st.column_config.TextColumn(width="small"),
        "requests": count,
        "tokens": count,
    },
)

st.subheader("Manage an account")
by_name = {u.username: u for u in users}
chosen = st.selectbox("Account", list(by_name), key="admin_user")
target = by_name.get(chosen) if chosen else None
if target is not None:
    label = escape_markdown(target.username)
    st.caption(f"{label}: {target.role}, {target.status(now=now)}")
    left, middle, right = st.columns(3)
    with left:
        enable = target.disabled
        if st.button("Enable" if enable else "Disable", key="admin_toggle"):
            verb = "enabled" if enable else "disabled"
            act(admin.set_disabled, f"{label} {verb}.", user_id=target.id, disabled=not enable)
        if target.locked(now=now) and st.button("Unlock", key="admin_unlock"):
            act(admin.unlock, f"{label} unlocked.", user_id=target.id)
    with middle:
        role = st.selectbox("Role", ROLES, index=ROLES.index(target.role), key="admin_role")
        if st.button("Change role", key="admin_set_role", disabled=role == target.role):
            act(admin.set_role, f"{label} is now {role}.", user_id=target.id, role=role)
    with right:
        if st.button("Reset password", key="admin_reset"):
            st.session_state[CONFIRM_RESET] = target.id
    if st.session_state.get(CONFIRM_RESET) == target.id:
        st.warning(
            f"Reset the password of **{label}**? Their password stops working at once and "
            "their browsers are logged out; you get a one-time password to hand over."
        )
        yes, no = st.columns(2)
        if no.button("Cancel", key="admin_reset_cancel"):
            st.session_state.pop(CONFIRM_RESET, None)
            st.rerun()
        if yes.button("Yes, reset it", type="primary", key="admin_reset_yes"):
            who = target.username

            def keep(password: str) -> None:
                st.session_state.pop(CONFIRM_RESET, None)
                st.session_state[ONE_TIME] = (who, password)

            act(admin.reset_password, f"Password of {label} reset.", keep, user_id=target.id)
