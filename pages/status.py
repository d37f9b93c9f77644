"""Status (admins): which services this app is connected to, and whether they answer."""

from __future__ import annotations

import streamlit as st

from app.page import header, require_admin
from core import readiness, services
from core.errors import LedgerError

require_admin()
header("Status", "The services this app is connected to, and whether they answer.")

problems = readiness.problems()  # never raises: each problem is one line, shown below
try:
    infos = services.describe()
except LedgerError:
    infos = []  # invalid settings: the problem line below names the variable
for info in infos:
    kind = "embedded" if info.embedded else "configured"
    st.markdown(f"**{info.name}** ({kind}): `{info.url}`")
for problem in problems:
    st.error(problem)
if not problems:
    st.success("PostgreSQL and Redis answer, and the database schema is up to date.")
