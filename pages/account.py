"""Account: your details, change your password, log out everywhere."""

from __future__ import annotations

import streamlit as st

from app import auth
from app.page import apply, current_user, header, set_notice, show_error, write
from core import accounts, cookies
from core.errors import LedgerError
from core.text import escape_markdown

user = current_user()
header("Account", "Your details, your password, and where you are logged in.")
try:
    email = write(lambda d: accounts.email_of(d, user_id=user.id))
except LedgerError as exc:
    show_error(exc)
    email = "—"
st.markdown(
    f"**{escape_markdown(user.display_name)}** · username `{user.username}` · "
    f"email {escape_markdown(email)} · role {user.role}"
)
with st.form("display_name"):
    name = st.text_input("Display name", user.display_name, key="account_display_name")
    rename = st.form_submit_button("Save display name", key="name_submit")
if rename and name != user.display_name:
    apply(
        lambda d: accounts.change_display_name(d, user_id=user.id, display_name=name),
        lambda stored: f"Display name changed to {escape_markdown(stored)}.",
    )

st.subheader("Change password")
if user.must_change_password:
    st.warning("Your password was reset by an administrator: choose a new one now.")
with st.form("change_password", clear_on_submit=True):
    current = st.text_input("Current password", type="password", key="pw_current")
    new = st.text_input(
        "New password",
        type="password",
        key="pw_new",
        help="At least 12 characters, not your username.",
    )
    confirm = st.text_input("Repeat new password", type="password", key="pw_confirm")
    change = st.form_submit_button("Change password", type="primary", key="pw_submit")
if change:
    try:
        cutoff = write(
            lambda d: accounts.change_password(
                d, user_id=user.id, current_password=current, new_password=new, confirm=confirm
            )
        )
    except LedgerError as exc:
        show_error(exc)
    else:
        # Other browsers' logins ended at `cutoff`; this one continues from it.
        auth.reissue_login(cookies.to_micros(cutoff))
        set_notice("success", "Password changed. Other browsers have been logged out.")
        auth.settle_then_rerun()

st.subheader("Log out everywhere")
st.caption("Ends every login of your account: this browser, other browsers and remembered cookies.")
if st.button("Log out everywhere", key="logout_everywhere"):
    try:
        write(lambda d: accounts.logout_everywhere(d, user_id=user.id))
    except LedgerError as exc:
        show_error(exc)
    else:
        auth.end_session(auth.current_authenticator(), "success", "You are logged out everywhere.")
        auth.settle_then_rerun()
