"""How pages write: a change is committed before the rerun that shows it.

st.rerun() raises a control-flow exception; raised inside ``session_scope`` it rolls the
transaction back, so a write followed by a rerun in the same block is silently lost. Pages
write through ``app.page.apply`` (commit, then rerun) and tests/unit/test_page_rules.py
keeps Streamlit calls out of transactions.
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from core import accounts


def rerun_inside_the_transaction() -> None:
    import streamlit as st

    from core import accounts, database

    if not st.session_state.get("done"):
        st.session_state["done"] = True
        with database.session_scope() as session:
            accounts.create_user(
                session,
                username="lost",
                email="lost@example.com",
                display_name="Lost",
                password="correct horse battery",
            )
            st.rerun()


def write_with_apply() -> None:
    import streamlit as st

    from app.page import apply, show_notice
    from core import accounts

    show_notice()
    name = st.text_input("Username", key="name")
    if st.button("Create", key="create"):
        apply(
            lambda d: (
                accounts.create_user(
                    d,
                    username=name,
                    email=f"{name}@example.com",
                    display_name=name,
                    password="correct horse battery",
                ).username
            ),
            lambda created: f"Created {created}.",
        )


def exists(dbs: Session, name: str) -> bool:
    dbs.expire_all()
    return accounts.get_by_username(dbs, username=name) is not None


def test_a_rerun_inside_session_scope_loses_the_write(dbs: Session) -> None:
    at = AppTest.from_function(rerun_inside_the_transaction).run()
    assert not at.exception
    assert not exists(dbs, "lost")


def test_apply_commits_then_reruns_with_its_notice(dbs: Session) -> None:
    at = AppTest.from_function(write_with_apply).run()
    at.text_input(key="name").input("kept")
    at.button(key="create").click().run()
    assert not at.exception
    assert exists(dbs, "kept")
    assert [s.value for s in at.success] == ["Created kept."]


def test_apply_shows_a_refusal_and_changes_nothing(dbs: Session) -> None:
    at = AppTest.from_function(write_with_apply).run()
    at.text_input(key="name").input("x")  # too short: InvalidInput
    at.button(key="create").click().run()
    assert not at.exception and not at.success
    assert [e.value for e in at.error] == [
        "Username must be 3 to 32 characters: letters, digits, dot, underscore or hyphen."
    ]
    assert not exists(dbs, "x")
