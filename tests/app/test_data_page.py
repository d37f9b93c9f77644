"""The Data page (AppTest): files dropped on it become tables, each with a preview; bad files
are refused with the reason; the SQL box and the finance form answer from code; tables are
their owner's; administrators see whose tables exist."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from core import data
from core.accounts import Identity
from tests.support.people import identity

Page = Callable[[str, Identity], AppTest]
SAMPLE = Path(__file__).resolve().parents[2] / "notebooks" / "samples" / "revenue.csv"


@pytest.fixture
def ann(dbs: Session) -> Identity:
    who = identity(dbs, "ann")
    dbs.commit()
    return who


def upload(at: AppTest, *files: tuple[str, bytes, str]) -> AppTest:
    at.file_uploader[0].set_value(list(files))
    return at.run()


def texts(elements: object) -> list[str]:
    return [str(e.value) for e in elements]  # type: ignore[attr-defined]


def test_a_dropped_csv_becomes_a_table_with_a_preview(
    page: Page, ann: Identity, dbs: Session
) -> None:
    at = page("data", ann).run()
    assert "No tables yet" in texts(at.info)[0]
    at = upload(at, ("revenue.csv", SAMPLE.read_bytes(), "text/csv"))
    assert texts(at.success) == ["**revenue\\.csv** is now table `revenue`: 12 rows, 4 columns."]
    assert [e.label for e in at.expander][:1] == ["revenue · 12 rows · 4 columns"]
    preview = at.dataframe[0].value
    assert list(preview.columns) == ["year", "segment", "revenue", "cost"] and len(preview) == 12
    assert [t.name for t in data.list_tables(dbs, user_id=ann.id)] == ["revenue"]
    at.run()  # the uploader keeps its file: it is not stored twice
    assert len(data.list_tables(dbs, user_id=ann.id)) == 1


def test_several_files_at_once_and_a_bad_one_said_by_name(
    page: Page, ann: Identity, dbs: Session
) -> None:
    at = upload(
        page("data", ann).run(),
        ("a.csv", b"x,y\n1,2\n", "text/csv"),
        ("empty.csv", b"", "text/csv"),
        ("b.csv", b"x;y\n3;4\n", "text/csv"),
    )
    assert len(at.success) == 2
    assert texts(at.error) == ["**empty\\.csv**: empty\\.csv\\: the file is empty\\."]
    assert [t.name for t in data.list_tables(dbs, user_id=ann.id)] == ["a", "b"]


def test_what_had_to_change_to_read_a_file_is_said(page: Page, ann: Identity) -> None:
    at = upload(page("data", ann).run(), ("m.csv", b"a,,a\n1,2,3\n", "text/csv"))
    assert any("Column names changed" in w for w in texts(at.warning))


@pytest.fixture
def with_table(ann: Identity, dbs: Session) -> Identity:
    data.upload(dbs, user_id=ann.id, filename="revenue.csv", data=SAMPLE.read_bytes())
    dbs.commit()
    return ann


def test_the_sql_box_answers_from_the_table(page: Page, with_table: Identity) -> None:
    at = page("data", with_table).run()
    at.text_area(key="sql_query").input(
        "SELECT segment, sum(revenue) AS total FROM revenue GROUP BY 1 ORDER BY 1"
    )
    at.button(key="sql_run").click().run()
    result = at.dataframe[-1].value
    assert result.to_dict("records") == [
        {"segment": "Retail", "total": 907},
        {"segment": "Wholesale", "total": 535},
    ]
    assert at.get("vega_lite_chart")  # categories and figures: a bar chart


def test_unsafe_sql_in_the_box_is_refused_with_the_reason(
    page: Page, with_table: Identity, dbs: Session
) -> None:
    at = page("data", with_table).run()
    at.text_area(key="sql_query").input("DROP TABLE revenue")
    at.button(key="sql_run").click().run()
    assert texts(at.warning) == ["Only SELECT queries may run; this is DROP."]
    assert data.get(dbs, user_id=with_table.id, table="revenue").row_count == 12


def test_the_finance_form_computes_in_code(page: Page, ann: Identity) -> None:
    at = page("data", ann).run()
    at.selectbox(key="fin_name").select("cagr").run()
    at.text_input(key="fin-cagr-start").input("120")
    at.text_input(key="fin-cagr-end").input("210")
    at.text_input(key="fin-cagr-years").input("5")
    at.button(key="fin_run").click().run()
    assert any("11\\.8427\\%" in m and "`0.1184269" in m for m in texts(at.markdown))


def test_another_users_tables_are_not_listed(
    page: Page, with_table: Identity, dbs: Session
) -> None:
    bob = identity(dbs, "bob")
    dbs.commit()
    at = page("data", bob).run()
    assert "No tables yet" in texts(at.info)[0] and not at.expander


def test_admins_see_whose_tables_exist(page: Page, with_table: Identity, dbs: Session) -> None:
    root = identity(dbs, "root", "admin")
    dbs.commit()
    at = page("data", root).run()
    owners = at.dataframe[0].value
    assert owners.to_dict("records")[0]["username"] == "ann"
    assert owners.to_dict("records")[0]["rows"] == 12
