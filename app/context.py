"""What every page needs from the router: the signed-in identity and uniform error display.

The router (ui.py) puts the signed-in ``core.accounts.Identity`` in
``st.session_state["identity"]`` before it runs a gated page.
"""

from __future__ import annotations

import streamlit as st

from core.accounts import Identity
from core.errors import LedgerError

IDENTITY_KEY = "identity"


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


def show_error(exc: LedgerError) -> None:
    """One clear message for a failure the user can act on."""
    st.error(str(exc))
