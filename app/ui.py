"""The page script: router (st.navigation). Pages live in ../pages."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parents[1] / "pages"

st.set_page_config(page_title="Ledger", page_icon="📒", layout="wide")

page = st.navigation([st.Page(PAGES / "status.py", title="Status", icon="🩺", url_path="status")])
page.run()
