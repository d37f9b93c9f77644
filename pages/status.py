"""Which services this app is connected to, and whether they answer."""

from __future__ import annotations

import streamlit as st

from core import health, services

st.title("Ledger")
st.caption("Finance chat assistant for analysts")
st.subheader("Services")
checks = {c.name: c for c in (probe() for probe in health.PROBES)}
for info in services.describe():
    check = checks.get(info.name.lower())
    kind = "embedded" if info.embedded else "configured"
    line = f"**{info.name}** ({kind}): `{info.url}`"
    if check is None or check.ok:
        st.success(f"{line} — connected" + (f" in {check.ms} ms" if check else ""))
    else:
        st.error(f"{line} — {check.detail}")
