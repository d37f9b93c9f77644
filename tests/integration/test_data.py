"""Analysts' tables on real PostgreSQL: upload, owner-only access, queries behind two walls
(the SQL check and DuckDB's sandbox) with row and time limits, inert exports, chats' tables."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import data, sessions
from core.errors import Conflict, InvalidInput, NotFound
from core.models import DataTable, SessionTable
from core.sql_guard import UnsafeQuery
from tests.support.people import make_user

SAMPLE = Path(__file__).resolve().parents[2] / "notebooks" / "samples" / "revenue.csv"


@pytest.fixture
def ana(dbs: Session) -> uuid.UUID:
    return make_user(dbs, "ana").id


@pytest.fixture
def revenue(dbs: Session, ana: uuid.UUID) -> data.TableInfo:
    return data.upload(dbs, user_id=ana, filename="revenue.csv", data=SAMPLE.read_bytes()).table


def test_a_csv_becomes_a_named_table_with_its_schema(dbs: Session, revenue: data.TableInfo) -> None:
    assert (revenue.name, revenue.row_count, revenue.file_format) == ("revenue", 12, "csv")
    assert revenue.columns == [
        {"name": "year", "type": "integer"},
        {"name": "segment", "type": "text"},
        {"name": "revenue", "type": "integer"},
        {"name": "cost", "type": "integer"},
    ]
    frame = data.preview(dbs, user_id=revenue.user_id, table="revenue", rows=3)
    assert frame.to_dict("records")[0] == {
        "year": 2019,
        "segment": "Retail",
        "revenue": 120,
        "cost": 90,
    }


def test_xlsx_and_parquet_uploads(dbs: Session, ana: uuid.UUID) -> None:
    book = openpyxl.Workbook()
    book.active.append(["quarter", "ebitda"])
    book.active.append(["Q1", 12.5])
    book.active.append(["Q2", 14.0])
    raw = io.BytesIO()
    book.save(raw)
    xlsx = data.upload(dbs, user_id=ana, filename="EBITDA 2025.xlsx", data=raw.getvalue())
    assert (xlsx.table.name, xlsx.table.row_count) == ("ebitda_2025", 2)
    sink = io.BytesIO()
    pq.write_table(pa.table({"d": pa.array([1, 2, 3], pa.int32())}), sink)
    parquet = data.upload(dbs, user_id=ana, filename="9lives.parquet", data=sink.getvalue())
    assert (parquet.table.name, parquet.table.row_count) == ("t_9lives", 3)


def test_the_same_file_twice_gets_a_second_name(
    dbs: Session, ana: uuid.UUID, revenue: data.TableInfo
) -> None:
    again = data.upload(dbs, user_id=ana, filename="revenue.csv", data=SAMPLE.read_bytes())
    assert again.table.name == "revenue_2"
    with pytest.raises(Conflict):
        data.upload(dbs, user_id=ana, filename="x.csv", data=SAMPLE.read_bytes(), name="revenue")


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("empty.csv", b"", "the file is empty"),
        ("blank.csv", b"  \n\n", "the file is empty"),
        ("report.pdf", b"%PDF-1.7", "not a table Ledger reads"),
        ("noext", b"a,b\n1,2\n", "not a table Ledger reads"),
        ("broken.xlsx", b"PK\x03\x04 not really a zip", "The Excel file could not be read"),
        ("broken.parquet", b"PAR1 nonsense", "The Parquet file could not be read"),
    ],
)
def test_files_it_cannot_read_are_refused_with_the_reason_and_nothing_is_stored(
    dbs: Session, ana: uuid.UUID, filename: str, content: bytes, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        data.upload(dbs, user_id=ana, filename=filename, data=content)
    assert dbs.scalar(select(func.count()).select_from(DataTable)) == 0


def test_mixed_encodings_delimiters_and_bad_column_names_are_read_and_said(
    dbs: Session, ana: uuid.UUID
) -> None:
    raw = (
        b"name;;name;amount\n"
        + "Zoë;x;1;10\n".encode()
        + "Jos\xe9;y;2;20\n".encode("cp1252")
        + b"Ann,z,3,30\n"
    )
    stored = data.upload(dbs, user_id=ana, filename="messy.csv", data=raw)
    assert [c["name"] for c in stored.table.columns] == ["name", "column_2", "name_2", "amount"]
    rows = data.preview(dbs, user_id=ana, table=stored.table.id).to_dict("records")
    assert [r["name"] for r in rows] == ["Zoë", "José", "Ann,z,3,30"]
    notes = " ".join(stored.notes)
    assert "1 line was not UTF-8" in notes
    assert "different number of fields than the header (line 4)" in notes
    assert "'name' -> 'name_2'" in notes and "(empty) -> 'column_2'" in notes


def test_a_thousand_columns_are_read_and_more_are_refused(dbs: Session, ana: uuid.UUID) -> None:
    def wide(n: int) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([f"c{i}" for i in range(n)])
        writer.writerow(range(n))
        return out.getvalue().encode()

    assert data.upload(dbs, user_id=ana, filename="w.csv", data=wide(1000)).table.row_count == 1
    with pytest.raises(InvalidInput, match="1,001 columns"):
        data.upload(dbs, user_id=ana, filename="w2.csv", data=wide(1001))


def test_a_file_over_the_limit_is_refused_before_it_is_read(dbs: Session, ana: uuid.UUID) -> None:
    with pytest.raises(InvalidInput, match=r"2,048\.0 MB; the limit is 50 MB"):
        data.check_size(2 * 1024**3)  # what the page checks with the upload's size alone


# --- owners ------------------------------------------------------------------------------------


def test_another_users_table_reads_like_one_that_does_not_exist(
    dbs: Session, revenue: data.TableInfo
) -> None:
    bob = make_user(dbs, "bob").id
    for action in (
        lambda t: data.get(dbs, user_id=bob, table=t),
        lambda t: data.preview(dbs, user_id=bob, table=t),
        lambda t: data.rename(dbs, user_id=bob, table=t, name="mine"),
        lambda t: data.export(dbs, user_id=bob, table=t, fmt="csv"),
        lambda t: data.delete(dbs, user_id=bob, table=t),
        lambda t: data.query(dbs, user_id=bob, sql="SELECT 1", tables=[t]),
    ):
        for table in (revenue.id, "revenue", uuid.uuid4()):
            with pytest.raises(NotFound, match=r"Table not found\."):
                action(table)
    assert data.list_tables(dbs, user_id=bob) == []
    assert data.get(dbs, user_id=revenue.user_id, table="revenue").row_count == 12


def test_rename_and_delete(dbs: Session, ana: uuid.UUID, revenue: data.TableInfo) -> None:
    with pytest.raises(InvalidInput, match="lower-case letters"):
        data.rename(dbs, user_id=ana, table=revenue.id, name="Drop Table; --")
    assert data.rename(dbs, user_id=ana, table=revenue.id, name="Sales").name == "sales"
    data.delete(dbs, user_id=ana, table="sales")
    assert data.list_tables(dbs, user_id=ana) == []


def test_admins_see_whose_tables_exist_and_their_sizes_not_their_rows(
    dbs: Session, revenue: data.TableInfo
) -> None:
    frame = data.owners(dbs)
    assert frame.to_dict("records") == [
        {
            "username": "ana",
            "tables": 1,
            "rows": 12,
            "uploaded bytes": SAMPLE.stat().st_size,
            "stored bytes": frame["stored bytes"][0],
        }
    ]


# --- queries -----------------------------------------------------------------------------------


def test_a_query_aggregates_exactly(dbs: Session, ana: uuid.UUID, revenue: data.TableInfo) -> None:
    answer = data.query(
        dbs,
        user_id=ana,
        sql="SELECT year, sum(revenue) AS revenue FROM revenue GROUP BY year ORDER BY year",
        tables=["revenue"],
    )
    assert answer.frame["revenue"].tolist() == [200, 216, 197, 241, 273, 315]
    assert not answer.truncated and answer.tables == ["revenue"]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DROP TABLE revenue", "Only SELECT queries may run; this is DROP"),
        ("COPY revenue TO '/tmp/out.csv'", "this is COPY"),
        ("ATTACH '/tmp/x.db' AS x", "this is ATTACH"),
        ("SELECT * FROM read_csv('/etc/passwd')", "no table functions or files"),
        ("SELECT * FROM '/etc/passwd'", "no attached table"),
        ("SELECT 1; SELECT 2", "exactly one query"),
        ("SELECT current_setting('memory_limit')", "current_setting() is not allowed"),
        ("SELECT * FROM other_users_table", "no attached table 'other_users_table'"),
        ("SELECT * FROM information_schema.tables", "without a schema"),
        ("SELEKT everything", "Only SELECT queries may run"),
        ("SELECT (", "not valid SQL"),
    ],
)
def test_unsafe_or_wrong_sql_is_refused_before_it_runs(
    dbs: Session, ana: uuid.UUID, revenue: data.TableInfo, sql: str, message: str
) -> None:
    with pytest.raises(UnsafeQuery, match=message.replace("(", r"\(").replace(")", r"\)")):
        data.query(dbs, user_id=ana, sql=sql, tables=["revenue"])


def test_rows_beyond_the_limit_are_cut_and_said(
    dbs: Session, ana: uuid.UUID, revenue: data.TableInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_QUERY_MAX_ROWS", "5")
    from core.config import get_settings

    get_settings.cache_clear()
    try:
        answer = data.query(dbs, user_id=ana, sql="SELECT * FROM revenue", tables=["revenue"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert len(answer.frame) == 5 and answer.truncated


def test_a_runaway_cross_join_is_stopped_at_the_time_limit(
    dbs: Session, ana: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    numbers = "\n".join(str(i) for i in range(3000))
    data.upload(dbs, user_id=ana, filename="n.csv", data=f"x\n{numbers}\n".encode())
    monkeypatch.setenv("DATA_QUERY_SECONDS", "0.5")
    from core.config import get_settings

    get_settings.cache_clear()
    try:
        with pytest.raises(InvalidInput, match=r"longer than 0\.5 s and was stopped"):
            data.query(
                dbs,
                user_id=ana,
                sql="SELECT count(*) FROM n a, n b, n c WHERE a.x + b.x + c.x > -1",
                tables=["n"],
            )
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


# --- exports -----------------------------------------------------------------------------------


def test_exports_keep_formula_cells_inert_in_csv_and_xlsx_and_exact_in_parquet(
    dbs: Session, ana: uuid.UUID
) -> None:
    raw = b'client,amount\n"=HYPERLINK(""http://evil"",""x"")",5\n@SUM(A1),-3\n'
    stored = data.upload(dbs, user_id=ana, filename="clients.csv", data=raw)
    as_csv = data.export(dbs, user_id=ana, table=stored.table.id, fmt="csv").data.decode()
    assert "'=HYPERLINK" in as_csv and "'@SUM(A1)" in as_csv and ",-3" in as_csv
    xlsx = data.export(dbs, user_id=ana, table=stored.table.id, fmt="xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.data)).active
    assert [sheet.cell(row=r, column=1).value for r in (2, 3)] == [
        '\'=HYPERLINK("http://evil","x")',
        "'@SUM(A1)",
    ]
    parquet = data.export(dbs, user_id=ana, table=stored.table.id, fmt="parquet")
    back = pq.read_table(io.BytesIO(parquet.data)).to_pandas()
    assert back["client"][0] == '=HYPERLINK("http://evil","x")'  # the data itself, exactly
    assert xlsx.filename.endswith(".xlsx") and parquet.filename.endswith(".parquet")


# --- tables in a chat ------------------------------------------------------------------------


def test_tables_attach_to_a_chat_and_leave_it_when_deleted(
    dbs: Session, ana: uuid.UUID, revenue: data.TableInfo
) -> None:
    chat = sessions.create(dbs, user_id=ana, title="Q3")
    assert data.attach(dbs, user_id=ana, session_id=chat.id, tables=[revenue.id])
    assert [t.name for t in data.attached(dbs, user_id=ana, session_id=chat.id)] == ["revenue"]
    told = data.describe_for_model(dbs, user_id=ana, tables=[revenue])
    assert told.startswith("Table revenue (12 rows; from revenue.csv): year integer, segment")
    assert "2019 | Retail | 120 | 90" in told and "2022" not in told  # five rows only
    data.delete(dbs, user_id=ana, table=revenue.id)
    assert data.attached(dbs, user_id=ana, session_id=chat.id) == []
    assert dbs.scalar(select(func.count()).select_from(SessionTable)) == 0


def test_another_users_table_or_session_cannot_be_attached(
    dbs: Session, ana: uuid.UUID, revenue: data.TableInfo
) -> None:
    bob = make_user(dbs, "bob").id
    theirs = sessions.create(dbs, user_id=bob, title="Bob's")
    mine = sessions.create(dbs, user_id=ana, title="Mine")
    with pytest.raises(NotFound):
        data.attach(dbs, user_id=ana, session_id=theirs.id, tables=[revenue.id])
    with pytest.raises(NotFound):
        data.attach(dbs, user_id=bob, session_id=mine.id, tables=[revenue.id])
    with pytest.raises(NotFound):
        data.attach(dbs, user_id=bob, session_id=theirs.id, tables=[revenue.id])


def test_the_decoded_table_cache_stays_within_its_bound() -> None:
    from core.query_engine import ArrowCache, to_parquet

    cache = ArrowCache(max_bytes=100_000)
    payload = to_parquet(pa.table({"x": list(range(10_000))}))  # 80 kB decoded
    for n in range(5):
        cache.get(f"t{n}", lambda: payload)
    assert cache.size <= 100_000
    assert pd.Series(range(10_000)).equals(cache.get("t4", lambda: b"").column("x").to_pandas())
