"""Which services this app is connected to, and whether they answer."""

from __future__ import annotations

import streamlit as st

from core import services, startup
from core.errors import LedgerError

st.title("Ledger")
st.caption("Finance chat assistant for analysts")
st.subheader("Services")

problems = startup.check_services()
try:
    infos = services.describe()
except LedgerError:
    infos = []  # invalid settings: the problem line says which variable
for info in infos:
    kind = "embedded" if info.embedded else "configured"
    st.markdown(f"**{info.name}** ({kind}): `{info.url}`")
for problem in problems:
    st.error(problem)
if not problems:
    st.success("PostgreSQL and Redis answer, and the database schema is up to date.")
