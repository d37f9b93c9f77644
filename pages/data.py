"""Data: your own tables (CSV, XLSX, Parquet), and exact figures from them without a model:
a SQL box and the finance functions. Chats use the same tables and the same checks."""

from __future__ import annotations

import streamlit as st

from app import data_view
from app.page import current_user, header, read, show_error, table
from core import data
from core.config import get_settings
from core.errors import LedgerError

user = current_user()
header("Data", "Your tables: upload, look, query with SQL, compute finance figures exactly.")
if user.is_admin:
    with st.expander("Whose tables exist (all users)"):
        table(read(data.owners), hide_index=True)

limit = get_settings().data_upload_max_mb
files = st.file_uploader(
    f"Upload tables: CSV, XLSX or Parquet, up to {limit:g} MB each",
    type=["csv", "tsv", "txt", "xlsx", "parquet"],
    accept_multiple_files=True,
    key="data_upload",
)
data_view.upload_files(user, files or [])

try:
    mine = read(lambda d: data.list_tables(d, user_id=user.id))
except LedgerError as exc:
    show_error(exc)
    st.stop()
if not mine:
    st.info("No tables yet: drop a CSV, XLSX or Parquet file above.")
    data_view.finance_form(user)
    st.stop()
st.subheader("Your tables")
for info in mine:
    data_view.table_panel(user, info)
data_view.sql_box(user, mine)
data_view.finance_form(user)
