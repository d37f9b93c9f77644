"""Admin: every account with its usage; disable/enable, role, password reset, unlock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from app import auth
from app.context import require_admin
from core import admin, clock, db
from core.errors import LedgerError
from core.models import ROLES

me = require_admin()
st.title("Administration")
auth.show_notice()

one_time = st.session_state.pop("_admin_one_time_pw", None)
name = st.session_state.pop("_admin_one_time_for", "")
if one_time:
    st.warning(
        f"One-time password for **{auth.md_escape(name)}**, shown only now. Hand it over "
        "safely: they must choose a new password when they log in."
    )
    st.code(one_time, language=None)


def act(fn: Callable[..., Any], done: str, keep: str = "", **kwargs: Any) -> None:
    """Run one admin action in its own transaction, then show the refreshed page.

    A refusal (last admin, not an admin any more...) is shown and nothing changes.
    ``keep`` names a session key that receives the result (the one-time password).
    """
    try:
        with db.session_scope() as session:
            result = fn(session, actor_id=me.id, **kwargs)
    except LedgerError as exc:
        st.error(str(exc))
        return
    if keep:
        st.session_state[keep] = result
    auth.set_notice("success", done)
    st.rerun()


with db.session_scope() as session:
    users = admin.list_users(session, actor_id=me.id)
now = clock.now()


def status(u: admin.UserSummary) -> str:
    if u.disabled:
        return "disabled"
    if u.locked_until and u.locked_until > now:
        return f"locked until {u.locked_until:%H:%M} UTC"
    return "must change password" if u.must_change_password else "active"


table = pd.DataFrame(
    {
        "username": [u.username for u in users],
        "display name": [u.display_name for u in users],
        "email": [u.email for u in users],
        "role": [u.role for u in users],
        "status": [status(u) for u in users],
        "last login": [u.last_login_at for u in users],
        "requests": [u.requests for u in users],
        "tokens": [u.tokens for u in users],
        "created": [u.created_at for u in users],
    }
)
st.dataframe(table, hide_index=True, width="stretch")

st.subheader("Manage an account")
by_name = {u.username: u for u in users}
chosen = st.selectbox("Account", list(by_name), key="admin_user")
target = by_name.get(chosen) if chosen else None
if target is not None:
    label = auth.md_escape(target.username)
    st.caption(f"{label}: {target.role}, {status(target)}")
    left, middle, right = st.columns(3)
    with left:
        enable = target.disabled
        if st.button("Enable" if enable else "Disable", key="admin_toggle"):
            verb = "enabled" if enable else "disabled"
            act(admin.set_disabled, f"{label} {verb}.", user_id=target.id, disabled=not enable)
        if target.locked_until and target.locked_until > now and st.button("Unlock"):
            act(admin.unlock, f"{label} unlocked.", user_id=target.id)
    with middle:
        role = st.selectbox("Role", ROLES, index=ROLES.index(target.role), key="admin_role")
        if st.button("Change role", key="admin_set_role", disabled=role == target.role):
            act(admin.set_role, f"{label} is now {role}.", user_id=target.id, role=role)
    with right:
        if st.button("Reset password", key="admin_reset"):
            st.session_state["_admin_one_time_for"] = target.username
            act(
                admin.reset_password,
                f"Password of {label} reset.",
                "_admin_one_time_pw",
                user_id=target.id,
            )
