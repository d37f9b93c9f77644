"""Status (admins): which services this app is connected to, and whether they answer."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from app.page import header, require_admin, table
from core import llm as llm_backends
from core import readiness, services
from core.errors import LedgerError
from core.text import escape_markdown

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

# The model server: which backend answers, where, and whether it does (details that /healthz,
# which answers anyone, leaves out).
llm = next(c for c in readiness.run_probes() if c.name == "llm")
show = st.success if llm.ok else st.warning  # pages still open; chats say why they fail
show(f"**LLM** ({llm.ms:,.0f} ms): {escape_markdown(llm.detail)}")

# A pool of Ollama hosts (OLLAMA_HOSTS): each host's state as this process sees it.
backend = llm_backends.get_backend()
if isinstance(backend, llm_backends.OllamaPool):
    now = time.monotonic()
    rows = [
        {
            "host": s.host,
            "state": "up" if s.up(now) else f"down, retried in {s.down_until - now:,.0f} s",
            "replies streaming": s.busy,
            "last error": s.last_error or "",
        }
        for s in backend.states()
    ]
    st.subheader("Ollama hosts")
    table(pd.DataFrame(rows), hide_index=True)
