"""Analysts' own tables: upload, list, rename, delete, download, query, attach to a chat.

    info = data.upload(db, user_id=me.id, filename="revenue.csv", data=raw)
    answer = data.query(db, user_id=me.id, sql="SELECT ...", tables=["revenue"])
    answer.frame            # a DataFrame: at most DATA_QUERY_MAX_ROWS rows

A table belongs to its owner: another user's table reads "Table not found.", exactly like one
that does not exist. Its rows are stored in PostgreSQL as Parquet (any app process can serve
any table); queries run in DuckDB, walled in (``core.query_engine``), after the SQL passed
``core.sql_guard``. Names are SQL identifiers (lower-case letters, digits, underscores), so a
query never needs quotes around them.
"""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import cells, ingest, query_engine, sessions, sql_guard, text
from core.clock import now
from core.config import Settings, get_settings
from core.errors import Conflict, InvalidInput, NotFound
from core.models import DataTable, SessionTable, User

NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,47}")
PREVIEW_ROWS = 20
SAMPLE_ROWS = 5  # rows a model sees of each attached table
MAX_CELL_CHARS = 80  # a sample cell shown to the model is cut here

_cache_lock = threading.Lock()
_caches: dict[int, query_engine.ArrowCache] = {}
# The Parquet of the last tables this process stored: the first query after an upload reads
# them from here, not back from PostgreSQL (a few MB, dropped once used or pushed out).
_just_stored: OrderedDict[str, bytes] = OrderedDict()
JUST_STORED = 2


@dataclass(frozen=True)
class TableInfo:
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    filename: str
    file_format: str
    file_bytes: int
    row_count: int
    columns: list[dict[str, str]]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: DataTable) -> TableInfo:
        return cls(
            row.id,
            row.user_id,
            row.name,
            row.filename,
            row.file_format,
            row.file_bytes,
            row.row_count,
            list(row.columns),
            row.created_at,
            row.updated_at,
        )

    @property
    def schema_line(self) -> str:
        return ", ".join(f"{c['name']} {c['type']}" for c in self.columns)


@dataclass(frozen=True)
class Upload:
    table: TableInfo
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Answer:
    """A query's result: the rows, the SQL as it ran, and what limited it."""

    sql: str
    frame: pd.DataFrame
    truncated: bool
    elapsed_ms: float
    tables: list[str]


def _cache(settings: Settings) -> query_engine.ArrowCache:
    size = settings.data_cache_mb * 1024 * 1024
    with _cache_lock:
        if size not in _caches:
            _caches[size] = query_engine.ArrowCache(size)
        return _caches[size]


def limits(settings: Settings | None = None) -> query_engine.Limits:
    settings = settings or get_settings()
    return query_engine.Limits(
        max_rows=settings.data_query_max_rows,
        seconds=settings.data_query_seconds,
        memory_mb=settings.data_query_memory_mb,
    )


# --- names ---------------------------------------------------------------------------------


def name_from_filename(filename: str) -> str:
    """``Q3 Revenue (final).csv`` -> ``q3_revenue_final``: a SQL identifier."""
    stem = Path(filename or "table").stem.lower()
    name = re.sub(r"[^a-z0-9]+", "_", stem).strip("_")
    if not name or not name[0].isalpha():
        name = f"t_{name}" if name else "table"
    return name[:48].rstrip("_")


def clean_name(name: str) -> str:
    cleaned = name.strip().lower() if isinstance(name, str) else ""
    if not NAME_RE.fullmatch(cleaned):
        raise InvalidInput(
            "name",
            "A table name is 1 to 48 lower-case letters, digits or underscores, starting with "
            "a letter (it is how queries name the table).",
        )
    return cleaned


def _free_name(db: Session, user_id: uuid.UUID, wanted: str) -> str:
    taken = set(db.scalars(select(DataTable.name).where(DataTable.user_id == user_id)))
    name, n = wanted, 2
    while name in taken:
        suffix = f"_{n}"
        name = wanted[: 48 - len(suffix)] + suffix
        n += 1
    return name


# --- upload and the table list --------------------------------------------------------------


def check_size(size: int, settings: Settings | None = None) -> None:
    """Refuse a file over DATA_UPLOAD_MAX_MB before it is read."""
    limit = (settings or get_settings()).data_upload_max_mb
    if size > limit * 1024 * 1024:
        raise InvalidInput(
            "file",
            f"The file is {size / 1024 / 1024:,.1f} MB; the limit is {limit:g} MB "
            "(DATA_UPLOAD_MAX_MB).",
        )


def upload(
    db: Session, *, user_id: uuid.UUID, filename: str, data: bytes, name: str | None = None
) -> Upload:
    """Read ``data`` as a table and store it under ``name`` (default: from the file name,
    made unique). Raises ``InvalidInput`` with the reason for a file it cannot read."""
    check_size(len(data))
    # The file's hash on another thread while DuckDB reads it (hashlib lets go of the GIL).
    digest: list[str] = []
    hashing = threading.Thread(target=lambda: digest.append(hashlib.sha256(data).hexdigest()))
    hashing.start()
    try:
        parsed = ingest.parse(filename, data)
    finally:
        hashing.join()
    wanted = clean_name(name) if name else name_from_filename(filename)
    if name and _owned_by_name(db, user_id, wanted) is not None:
        raise Conflict(f"You already have a table named {wanted}.", field="name")
    stamp = now()
    row = DataTable(
        user_id=user_id,
        name=wanted if name else _free_name(db, user_id, wanted),
        filename=filename[:255],
        file_format=parsed.fmt,
        file_bytes=len(data),
        row_count=parsed.rows,
        columns=parsed.columns,
        sha256=digest[0],
        parquet=parsed.parquet,
        parquet_bytes=len(parsed.parquet),
        created_at=stamp,
        updated_at=stamp,
    )
    db.add(row)
    db.flush()
    with _cache_lock:
        _just_stored[_key(row)] = parsed.parquet
        while len(_just_stored) > JUST_STORED:
            _just_stored.popitem(last=False)
    return Upload(TableInfo.of(row), parsed.notes)


def list_tables(db: Session, *, user_id: uuid.UUID) -> list[TableInfo]:
    """The owner's tables, by name."""
    rows = db.scalars(
        select(DataTable).where(DataTable.user_id == user_id).order_by(DataTable.name)
    )
    return [TableInfo.of(row) for row in rows]


def owners(db: Session) -> pd.DataFrame:
    """Whose tables exist and how big they are (for administrators; no contents)."""
    stmt = (
        select(
            User.username,
            func.count(DataTable.id),
            func.coalesce(func.sum(DataTable.row_count), 0),
            func.coalesce(func.sum(DataTable.file_bytes), 0),
            func.coalesce(func.sum(DataTable.parquet_bytes), 0),
        )
        .join(DataTable, DataTable.user_id == User.id)
        .group_by(User.username)
        .order_by(User.username)
    )
    columns = ["username", "tables", "rows", "uploaded bytes", "stored bytes"]
    return pd.DataFrame.from_records([tuple(r) for r in db.execute(stmt)], columns=columns)


def _owned_by_name(db: Session, user_id: uuid.UUID, name: str) -> DataTable | None:
    return db.scalars(
        select(DataTable).where(DataTable.user_id == user_id, DataTable.name == name.lower())
    ).one_or_none()


def _owned(db: Session, user_id: uuid.UUID, table: uuid.UUID | str) -> DataTable:
    """The owner's table by id or name; ``NotFound`` for anyone else's or an unknown one."""
    row: DataTable | None
    if isinstance(table, uuid.UUID):
        row = db.scalars(
            select(DataTable).where(DataTable.id == table, DataTable.user_id == user_id)
        ).one_or_none()
    else:
        row = _owned_by_name(db, user_id, str(table).strip()[:64])
    if row is None:
        raise NotFound("Table not found.")
    return row


def get(db: Session, *, user_id: uuid.UUID, table: uuid.UUID | str) -> TableInfo:
    return TableInfo.of(_owned(db, user_id, table))


def rename(db: Session, *, user_id: uuid.UUID, table: uuid.UUID | str, name: str) -> TableInfo:
    row = _owned(db, user_id, table)
    new = clean_name(name)
    if new != row.name and _owned_by_name(db, user_id, new) is not None:
        raise Conflict(f"You already have a table named {new}.", field="name")
    row.name, row.updated_at = new, now()
    db.flush()
    return TableInfo.of(row)


def delete(db: Session, *, user_id: uuid.UUID, table: uuid.UUID | str) -> None:
    """Delete the table (and detach it from every chat)."""
    row = _owned(db, user_id, table)
    db.execute(sql_delete(DataTable).where(DataTable.id == row.id, DataTable.user_id == user_id))
    db.flush()
    db.expunge(row)


# --- rows ----------------------------------------------------------------------------------


def _key(row: DataTable) -> str:
    return f"{row.id}:{row.sha256}"


def _arrow(db: Session, row: DataTable, settings: Settings) -> pa.Table:
    key = _key(row)  # a table's rows never change after upload (a rename keeps them)

    def load() -> bytes:
        with _cache_lock:
            stored = _just_stored.pop(key, None)
        if stored is not None:
            return stored
        content = db.scalar(select(DataTable.parquet).where(DataTable.id == row.id))
        return bytes(content or b"")

    return _cache(settings).get(key, load)


def preview(
    db: Session, *, user_id: uuid.UUID, table: uuid.UUID | str, rows: int = PREVIEW_ROWS
) -> pd.DataFrame:
    found = _owned(db, user_id, table)
    frame: pd.DataFrame = _arrow(db, found, get_settings()).slice(0, max(1, rows)).to_pandas()
    return frame


@dataclass(frozen=True)
class ExportFile:
    filename: str
    mime: str
    data: bytes


EXPORT_KINDS = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
}


def export(db: Session, *, user_id: uuid.UUID, table: uuid.UUID | str, fmt: str) -> ExportFile:
    """The whole table as CSV or XLSX (formula-like cells made inert, ``core.cells``) or as
    Parquet (the data exactly)."""
    if fmt not in EXPORT_KINDS:
        raise InvalidInput("format", f"Download as one of: {', '.join(EXPORT_KINDS)}.")
    row = _owned(db, user_id, table)
    arrow = _arrow(db, row, get_settings())
    if fmt == "parquet":
        data = query_engine.to_parquet(arrow)
    else:
        data = frame_bytes(arrow.to_pandas(), fmt)
    name = text.safe_filename(row.name, suffix=row.id.hex[:8], ext=fmt)
    return ExportFile(name, EXPORT_KINDS[fmt], data)


def frame_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """A DataFrame as a CSV or XLSX file whose cells a spreadsheet will not run."""
    safe = cells.inert_frame(frame)
    if fmt == "csv":
        return safe.to_csv(index=False).encode("utf-8")
    import io

    buffer = io.BytesIO()
    safe.to_excel(buffer, index=False, engine="openpyxl")
    return buffer.getvalue()


def query(db: Session, *, user_id: uuid.UUID, sql: str, tables: list[uuid.UUID | str]) -> Answer:
    """Run one read-only query over the owner's ``tables`` (checked, then walled in)."""
    settings = get_settings()
    rows = [_owned(db, user_id, t) for t in tables]
    if not rows:
        raise InvalidInput("tables", "Choose at least one table to query.")
    checked = sql_guard.check(sql, tables=[r.name for r in rows])
    arrows = {r.name: _arrow(db, r, settings) for r in rows}
    result = query_engine.run(checked, arrows, limits=limits(settings))
    return Answer(checked, result.frame, result.truncated, result.elapsed_ms, sorted(arrows))


# --- tables in a chat ----------------------------------------------------------------------


def attach(
    db: Session, *, user_id: uuid.UUID, session_id: uuid.UUID, tables: list[uuid.UUID]
) -> list[TableInfo]:
    """Make ``tables`` (the owner's) the ones the model may query in this chat."""
    sessions.get_for_owner(db, user_id=user_id, session_id=session_id)  # NotFound otherwise
    rows = [_owned(db, user_id, t) for t in tables]
    db.execute(sql_delete(SessionTable).where(SessionTable.session_id == session_id))
    for row in rows:
        db.add(SessionTable(session_id=session_id, table_id=row.id))
    db.flush()
    return [TableInfo.of(r) for r in rows]


def attached(db: Session, *, user_id: uuid.UUID, session_id: uuid.UUID) -> list[TableInfo]:
    rows = db.scalars(
        select(DataTable)
        .join(SessionTable, SessionTable.table_id == DataTable.id)
        .where(SessionTable.session_id == session_id, DataTable.user_id == user_id)
        .order_by(DataTable.name)
    )
    return [TableInfo.of(r) for r in rows]


def choices(
    db: Session, *, user_id: uuid.UUID, session_id: uuid.UUID | None
) -> tuple[dict[uuid.UUID, str], list[uuid.UUID]]:
    """For a chat's table picker, on every run of the chat page: the owner's tables by id
    (names only) and those attached to the session. Two small column reads, the second only
    when the owner has any table."""
    names = dict(
        db.execute(
            select(DataTable.id, DataTable.name)
            .where(DataTable.user_id == user_id)
            .order_by(DataTable.name)
        ).all()
    )
    if not names or session_id is None:
        return names, []
    chosen = db.scalars(select(SessionTable.table_id).where(SessionTable.session_id == session_id))
    return names, [t for t in chosen if t in names]


def describe_for_model(db: Session, *, user_id: uuid.UUID, tables: list[TableInfo]) -> str:
    """What the model is told about attached tables: names, columns, row counts and a few
    sample rows, never the whole table. Cells are cut short; it is data, not instructions."""
    settings = get_settings()
    parts = []
    for info in tables:
        row = _owned(db, user_id, info.id)
        sample = _arrow(db, row, settings).slice(0, SAMPLE_ROWS).to_pylist()
        lines = [" | ".join(_cell(v) for v in record.values()) for record in sample]
        parts.append(
            f"Table {info.name} ({info.row_count:,} rows; from {info.filename}): "
            f"{info.schema_line}\n"
            f"First rows:\n" + "\n".join(lines)
        )
    return "\n\n".join(parts)


def _cell(value: object) -> str:
    shown = " ".join(str(value).split()) if value is not None else "NULL"
    return shown if len(shown) <= MAX_CELL_CHARS else shown[: MAX_CELL_CHARS - 1] + "…"
