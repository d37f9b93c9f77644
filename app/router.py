"""The page script: login gate and router (st.navigation). Pages live in ../pages.

Every run: check the settings and that PostgreSQL and Redis answer (one clear error
otherwise), build this run's authenticator, find out who is signed in (re-checked against
the database), then register the pages that person may open (app/nav.py) and run one.
"""

from __future__ import annotations

import streamlit as st

from app import auth, narrow, nav, recovery
from core import readiness
from core.config import get_settings
from core.errors import LedgerError
from core.text import escape_markdown

st.set_page_config(page_title="Ledger", page_icon="📒", layout="wide")

problem = readiness.blocking_problem()
if problem:
    st.error(escape_markdown(problem))
    recovery.offer_back_unsaved()
    st.stop()
recovery.save_unsaved()

try:
    authenticator = auth.build_authenticator()
except LedgerError as exc:  # an unusable cookie key file: one clear line, no traceback
    st.error(escape_markdown(str(exc)))
    st.stop()

identity = auth.signed_in_identity(authenticator)
if identity is None:
    spec = nav.visitor_spec(allow_registration=get_settings().allow_registration)
else:
    spec = nav.member_spec(identity)
page = st.navigation(nav.build(spec))
if identity is not None:
    auth.sidebar(authenticator, identity)
    if identity.must_change_password:
        st.warning("You logged in with a one-time password: choose your own to continue.")
st.session_state["page"] = page.title  # which page this run shows (for tests and debugging)
narrow.close_sidebar_after_navigation(page.title)
page.run()
