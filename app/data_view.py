"""The Data page's parts: uploading tables, one table's panel (schema, preview, rename,
delete, download), the SQL box and the finance form. Logic lives in core.data, core.finance
and core.tools; this module only draws and routes clicks."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import streamlit as st
from sqlalchemy.orm import Session

from app.chat_view import show_card
from app.page import apply, delete_with_confirmation, read, show_error, table, write
from core import data, tools
from core.accounts import Identity
from core.errors import LedgerError
from core.text import escape_markdown

DONE_KEY = "_data_uploaded"  # uploader file ids already stored (the widget keeps its files)
S = st.session_state


def upload_files(user: Identity, files: list[Any]) -> None:
    """Store each newly dropped file as a table; say what was stored, changed or refused."""
    done: set[str] = S.setdefault(DONE_KEY, set())
    for file in files:
        if file.file_id in done:
            continue
        done.add(file.file_id)
        try:
            data.check_size(file.size)  # before the bytes are read
            stored = write(_uploader(user, file.name, file.getvalue()))
        except LedgerError as exc:
            st.error(f"**{escape_markdown(file.name)}**: {escape_markdown(str(exc))}")
            continue
        info = stored.table
        st.success(
            f"**{escape_markdown(file.name)}** is now table `{info.name}`: "
            f"{info.row_count:,} rows, {len(info.columns):,} columns."
        )
        for note in stored.notes:
            st.warning(escape_markdown(note))


def _uploader(user: Identity, name: str, raw: bytes) -> Callable[[Session], data.Upload]:
    return lambda d: data.upload(d, user_id=user.id, filename=name, data=raw)


def _exporter(user: Identity, info: data.TableInfo, fmt: str) -> Callable[[], bytes]:
    """The file, built only when its button is clicked (a whole table can be large)."""
    return lambda: write(lambda d: data.export(d, user_id=user.id, table=info.id, fmt=fmt)).data


def table_panel(user: Identity, info: data.TableInfo) -> None:
    label = f"{info.name} · {info.row_count:,} rows · {len(info.columns)} columns"
    with st.expander(label):
        st.caption(
            f"From {escape_markdown(info.filename)} ({info.file_bytes / 1024:,.0f} KB), "
            f"uploaded {info.created_at:%Y-%m-%d %H:%M} UTC. Columns: "
            + escape_markdown(info.schema_line)
        )
        try:
            table(read(lambda d: data.preview(d, user_id=user.id, table=info.id)), hide_index=True)
        except LedgerError as exc:
            show_error(exc)
        cols = st.columns(3)
        for col, fmt in zip(cols, data.EXPORT_KINDS, strict=True):
            col.download_button(
                f"Download {fmt.upper()}",
                _exporter(user, info, fmt),
                f"{info.name}.{fmt}",
                data.EXPORT_KINDS[fmt],
                key=f"dl-{fmt}-{info.id}",
                on_click="ignore",
            )
        new = st.text_input("Name", info.name, key=f"name-{info.id}", max_chars=48)
        left, right = st.columns(2)
        if left.button("Rename", key=f"rename-{info.id}") and new != info.name:
            apply(lambda d: data.rename(d, user_id=user.id, table=info.id, name=new), "Renamed.")
        delete_with_confirmation(
            right, "table", info.id, info.name,
            lambda d: data.delete(d, user_id=user.id, table=info.id), "Table deleted.",
        )  # fmt: skip


def sql_box(user: Identity, mine: list[data.TableInfo]) -> None:
    st.subheader("Ask with SQL")
    st.caption(
        "One read-only SELECT over the tables you pick (DuckDB SQL); the same checks as the "
        "chat's run_sql tool."
    )
    names = [t.name for t in mine]
    picked = st.multiselect("Tables", names, default=names[:1], key="sql_tables")
    example = f"SELECT * FROM {names[0]} LIMIT 10"  # noqa: S608 (a placeholder, never run)
    sql = st.text_area("Query", key="sql_query", placeholder=example)
    if st.button("Run query", key="sql_run", disabled=not picked):
        call = tools.Call("run_sql", {"query": sql})
        show_card(write(lambda d: tools.run(call, db=d, user_id=user.id, tables=picked)))


def finance_form(user: Identity) -> None:
    st.subheader("Finance functions")
    st.caption("Computed in code, as the chat's tools compute them. Lists: comma-separated.")
    name = st.selectbox("Function", list(tools.FINANCE), key="fin_name")
    _, description, params = tools.FINANCE[name]
    st.caption(description)
    values: dict[str, Any] = {}
    for param, (kind, hint) in params.items():
        raw = st.text_input(f"{param} ({kind})", key=f"fin-{name}-{param}", help=hint or None)
        if raw.strip():
            values[param] = raw if kind in ("numbers", "dates", "string") else raw.strip()
    if st.button("Compute", key="fin_run"):
        call = tools.Call(name, json.loads(json.dumps(values)))
        show_card(write(lambda d: tools.run(call, db=d, user_id=user.id, tables=[])))
