"""House rules for pages, checked on their source: thin pages with no SQL and no clients, and
no Streamlit call inside a database transaction.

Why the last one: st.rerun(), st.switch_page() and st.stop() raise, and any st.* call can
raise when the user clicks meanwhile; raised inside ``session_scope`` they roll the change
back (tests/app/test_writes.py shows it). Pages therefore write through
``app.page.write`` / ``apply``, whose changes hold no Streamlit call.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "pages").glob("*.py"))
APP = sorted((ROOT / "app").glob("*.py"))
MAX_PAGE_LINES = 130  # "about 100": a page past this has logic that belongs in core
WRITERS = {"write", "apply"}


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def streamlit_calls(node: ast.AST) -> list[int]:
    """Lines of calls to st.* (or to the page helpers that rerun) below ``node``."""
    lines = []
    for sub in ast.walk(node):
        if not isinstance(sub, ast.Call):
            continue
        fn = sub.func
        while isinstance(fn, ast.Attribute):
            if isinstance(fn.value, ast.Name) and fn.value.id == "st":
                lines.append(sub.lineno)
                break
            fn = fn.value
        if isinstance(fn, ast.Attribute) and fn.attr in {"settle_then_rerun", "end_session"}:
            lines.append(sub.lineno)
    return lines


def transactions(module: ast.Module) -> list[ast.With]:
    return [
        node
        for node in ast.walk(module)
        if isinstance(node, ast.With)
        and any("session_scope" in ast.unparse(item.context_expr) for item in node.items)
    ]


@pytest.mark.parametrize("path", PAGES + APP, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_streamlit_call_inside_a_transaction(path: Path) -> None:
    module = tree(path)
    inside = [line for block in transactions(module) for line in streamlit_calls(block)]
    changes = [
        call.args[0]
        for call in ast.walk(module)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id in WRITERS
        and call.args
    ]
    inside += [line for change in changes for line in streamlit_calls(change)]
    assert inside == [], f"{path.name}: Streamlit calls inside a transaction at lines {inside}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_pages_hold_no_sql_no_clients_and_no_transactions_of_their_own(path: Path) -> None:
    """...nor a table shown by st.dataframe itself: app.page.table makes its cells inert."""
    source = path.read_text()
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree(path))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert not imported & {"sqlalchemy", "redis", "psycopg", "ollama", "llama_cpp"}
    for banned in (
        "session_scope",
        "create_engine",
        "Redis(",
        "Client(",
        "select(",
        "st.dataframe",
    ):
        assert banned not in source, f"{path.name} uses {banned}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_pages_stay_thin(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_PAGE_LINES


def test_the_rule_finds_a_rerun_inside_a_transaction() -> None:
    bad = ast.parse(
        "with db.session_scope() as s:\n"
        "    sessions.rename(s, user_id=u, session_id=i, title=t)\n"
        "    st.rerun()\n"
        "write(lambda d: st.success('x'))\n"
    )
    inside = [line for block in transactions(bad) for line in streamlit_calls(block)]
    assert inside == [3]
    assert streamlit_calls(bad.body[1]) == [4]
