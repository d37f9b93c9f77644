"""Register: create an account (hidden when ALLOW_REGISTRATION=false)."""

from __future__ import annotations

import streamlit as st

from app import auth
from app.page import LOGIN_VIEW, header, set_notice, show_error, store, write
from core import accounts
from core.config import get_settings
from core.errors import Conflict, InvalidInput, LedgerError
from core.text import escape_markdown

LABELS = {
    "username": "Username",
    "email": "Email",
    "display_name": "Display name",
    "password": "Password",
    "password_confirm": "Repeat password",
}

header("Register", "Create your account: you log in with it right after.")
if not get_settings().allow_registration:
    st.info("Registration is closed: accounts are created by an administrator.")
    st.stop()

with st.form("register"):
    username = st.text_input(
        "Username", key="reg_username", help="3 to 32 letters, digits, dot, underscore or hyphen."
    )
    email = st.text_input("Email", key="reg_email")
    display_name = st.text_input(
        "Display name", key="reg_display_name", help="Shown in the app; up to 100 characters."
    )
    password = st.text_input(
        "Password",
        type="password",
        key="reg_password",
        help="At least 12 characters, not your username.",
    )
    confirm = st.text_input("Repeat password", type="password", key="reg_password_confirm")
    submitted = st.form_submit_button("Create account", type="primary")

if submitted:
    problems = accounts.registration_problems(
        username=username,
        email=email,
        display_name=display_name,
        password=password,
        password_confirm=confirm,
    )
    if not problems:
        try:
            r, address = store(), auth.client_address()
            created = write(
                lambda d: (
                    accounts.register(
                        d,
                        r,
                        address=address,
                        username=username,
                        email=email,
                        display_name=display_name,
                        password=password,
                        password_confirm=confirm,
                    ).username
                )
            )
        except (InvalidInput, Conflict) as exc:
            problems = {exc.field or "username": str(exc)}
        except LedgerError as exc:  # storage down, or too many from this address: nothing saved
            show_error(exc)
            st.stop()
        else:
            set_notice(
                "success",
                f"Account {escape_markdown(created)} created: log in below.",
                where=LOGIN_VIEW,
            )
            st.switch_page(auth.PAGES / "login.py")
    for field, message in problems.items():
        st.error(f"**{LABELS.get(field, field)}**: {message}")
    st.caption("Nothing was saved: correct the fields above and submit again.")
