"""An uploaded file (CSV, XLSX or Parquet) read into a Parquet table, or a clear refusal.

Nothing is lost quietly: what had to be changed to read the file (lines that were not UTF-8,
rows with a different number of fields, renamed columns) comes back as ``notes`` the Data page
shows. A CSV goes from file to Parquet inside DuckDB (fast, in parallel) in a private
temporary folder, removed whatever happens.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import InvalidInput

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".parquet": "parquet"}
MAX_COLUMNS = 1000
MAX_COLUMN_NAME = 64
DELIMITERS = ",;\t|"
COMPRESSION = "snappy"  # zstd is 30 % smaller but costs a fifth more time to write


@dataclass
class Parsed:
    parquet: bytes  # the table as stored
    columns: list[dict[str, str]]  # [{"name": ..., "type": integer | number | text | ...}]
    rows: int
    fmt: str
    notes: list[str] = field(default_factory=list)


def _refuse(message: str) -> InvalidInput:
    return InvalidInput("file", message)


def file_format(filename: str) -> str:
    """``csv``, ``xlsx`` or ``parquet`` from the file's extension; ``InvalidInput`` otherwise."""
    suffix = Path(filename or "").suffix.lower()
    if suffix not in FORMATS:
        allowed = ", ".join(sorted(FORMATS))
        raise _refuse(f"{filename or 'The file'}: not a table Ledger reads ({allowed}).")
    return FORMATS[suffix]


def parse(filename: str, data: bytes) -> Parsed:
    """Read ``data`` (the file's bytes) as the table its extension says it is."""
    fmt = file_format(filename)
    if not data or (not data[:4096].strip() and not data.strip()):
        raise _refuse(f"{filename}: the file is empty.")
    if fmt == "csv":
        return _csv(filename, data)
    table, notes = _xlsx(data) if fmt == "xlsx" else (_parquet(data), [])
    _check_width(filename, table.num_columns)
    names = clean_names(table.column_names, notes)
    table = table.rename_columns(names)
    columns = [{"name": f.name, "type": _arrow_type(f.type)} for f in table.schema]
    return Parsed(_to_parquet(table), columns, table.num_rows, fmt, notes)


def _check_width(filename: str, count: int) -> None:
    if count == 0:
        raise _refuse(f"{filename}: no columns were found.")
    if count > MAX_COLUMNS:
        raise _refuse(
            f"{filename}: {count:,} columns; Ledger reads tables of at most {MAX_COLUMNS:,} "
            "columns."
        )


def _to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=COMPRESSION)
    return sink.getvalue()


# --- CSV -------------------------------------------------------------------------------------


def _as_utf8(data: bytes, notes: list[str]) -> bytes:
    """The text as UTF-8: lines that are not UTF-8 are read as Windows-1252 (a spreadsheet's
    usual export), and the note says how many."""
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        pass
    lines, recoded = [], 0
    for line in data.split(b"\n"):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("cp1252", errors="replace"))
            recoded += 1
    lines_were = "1 line was" if recoded == 1 else f"{recoded:,} lines were"
    notes.append(f"{lines_were} not UTF-8 and read as Windows-1252 (check accented letters there).")
    return "\n".join(lines).encode("utf-8")


class _NotUtf8(Exception):
    """DuckDB met bytes that are not UTF-8: read the file again, recoded."""


def _csv(filename: str, data: bytes) -> Parsed:
    body = data.removeprefix(b"\xef\xbb\xbf")
    try:
        # DuckDB checks the encoding as it reads, so a UTF-8 file (the usual case) is not
        # decoded a second time in Python first (about 10 % of an upload's time).
        return _csv_text(filename, body, [])
    except _NotUtf8:
        notes: list[str] = []
        try:
            return _csv_text(filename, _as_utf8(body, notes), notes)
        except _NotUtf8:  # recoded, and still refused: say so rather than loop
            raise _refuse(
                "The CSV file could not be read: its text encoding is not one "
                "Ledger reads (UTF-8, or Windows-1252 line by line)."
            ) from None


def _csv_text(filename: str, text: bytes, notes: list[str]) -> Parsed:
    head = text[:65536].decode("utf-8", errors="replace")
    header = head.splitlines()[0] if head.splitlines() else ""
    delimiter = _guess_delimiter(head)
    # Lines after the header (a last line without a newline counts too).
    lines = text.count(b"\n") - (1 if text.endswith(b"\n") else 0)
    whole = len(text) == len(head.encode("utf-8"))
    with tempfile.TemporaryDirectory(prefix="ledger-upload-") as folder:
        source, target = Path(folder) / "upload.csv", Path(folder) / "table.parquet"
        source.write_bytes(text)
        con = duckdb.connect()
        try:
            if not _uneven_rows(head, delimiter, whole=whole):
                strict = _write(con, source, target, delimiter, header, filename)
                if strict is not None and strict[1] == lines:
                    columns, rows, renamed = strict
                    return Parsed(target.read_bytes(), columns, rows, "csv", notes + renamed)
            lenient = _write(con, source, target, delimiter, header, filename, lenient=True)
            assert lenient is not None  # a lenient read raises its reason instead
            columns, rows, renamed = lenient
            notes += renamed
        finally:
            con.close()
        parquet = target.read_bytes()
    uneven = _uneven_rows(text.decode("utf-8", errors="replace"), delimiter, whole=True)
    if uneven:
        shown = ", ".join(str(n) for n in uneven[:5]) + (" ..." if len(uneven) > 5 else "")
        count = "1 line has" if len(uneven) == 1 else f"{len(uneven):,} lines have"
        notes.append(
            f"{count} a different number of fields than the header (line {shown}): cells it "
            "lacks are empty, and the table has a column for the widest line; check them."
        )
    return Parsed(parquet, columns, rows, "csv", notes)


def _write(
    con: duckdb.DuckDBPyConnection,
    source: Path,
    target: Path,
    delimiter: str,
    header: str,
    filename: str,
    *,
    lenient: bool = False,
) -> tuple[list[dict[str, str]], int, list[str]] | None:
    """DuckDB reads the CSV with the header's delimiter and writes it as Parquet under clean
    column names; (columns, rows, notes on renamed columns), or None when a strict read fails.
    ``lenient`` pads short rows with empty cells instead (and raises the reason when even
    that fails)."""
    renamed: list[str] = []
    options: dict[str, object] = {"delimiter": delimiter, "header": True}
    if lenient:
        options |= {"null_padding": True, "strict_mode": False}
    try:
        relation = con.read_csv(str(source), **options)  # type: ignore[arg-type]
        found, kinds = relation.columns, [str(t) for t in relation.types]
        _check_width(filename, len(found))
        fields = next(csv.reader([header], delimiter=delimiter), [])
        wanted = fields if len(fields) == len(found) else found
        names = clean_names(wanted, renamed)
        selection = ", ".join(
            f"{_quote(old)} AS {_quote(new)}" for old, new in zip(found, names, strict=True)
        )
        relation.project(selection).write_parquet(str(target), compression=COMPRESSION)
    except duckdb.Error as exc:
        if "Invalid unicode" in str(exc):
            raise _NotUtf8 from None
        if not lenient:
            return None
        said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _refuse(f"The CSV file could not be read: {said}") from None
    rows = pq.read_metadata(str(target)).num_rows
    columns = [{"name": n, "type": _duck_type(k)} for n, k in zip(names, kinds, strict=True)]
    return columns, rows, renamed


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _guess_delimiter(head: str) -> str:
    """The delimiter the header line uses most (a tie, or none: Python's sniffer decides)."""
    header = head.splitlines()[0] if head.splitlines() else ""
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts.values()) if counts else 0
    leaders = [d for d, n in counts.items() if n == best]
    if best and len(leaders) == 1:
        return leaders[0]
    try:
        return csv.Sniffer().sniff(head, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _uneven_rows(text: str, delimiter: str, *, whole: bool) -> list[int]:
    """Line numbers whose field count differs from the header's (the last line of a head cut
    mid-file is not judged)."""
    lines = text.splitlines() if whole else text.splitlines()[:-1]
    rows = csv.reader(lines, delimiter=delimiter)
    width = len(next(rows, []))
    return [n for n, row in enumerate(rows, start=2) if row and len(row) != width]


# --- XLSX and Parquet -----------------------------------------------------------------------


def _xlsx(data: bytes) -> tuple[pa.Table, list[str]]:
    notes: list[str] = []
    try:
        sheets = pd.read_excel(
            io.BytesIO(data),
            sheet_name=None,
            engine="openpyxl",
            keep_default_na=False,
            na_values=[""],
        )
    except Exception as exc:  # openpyxl raises many kinds for a damaged file
        raise _refuse(f"The Excel file could not be read ({type(exc).__name__}).") from None
    if not sheets:
        raise _refuse("The Excel file has no sheet.")
    name, frame = next(iter(sheets.items()))
    if len(sheets) > 1:
        notes.append(f"Read the first sheet, {name!r}, of {len(sheets)}; upload others as CSV.")
    names = [str(c) if not str(c).startswith("Unnamed:") else "" for c in frame.columns]
    frame.columns = [f"{c}\x00{i}" for i, c in enumerate(names)]  # distinct, for Arrow
    for column in frame.columns:
        if pd.api.types.is_object_dtype(frame[column]):
            kinds = {type(v) for v in frame[column].dropna()}
            if len(kinds) > 1:  # numbers and text in one column: kept as text
                frame[column] = frame[column].map(lambda v: None if pd.isna(v) else str(v))
    try:
        return pa.Table.from_pandas(frame, preserve_index=False), notes
    except (pa.ArrowException, ValueError) as exc:
        raise _refuse(f"The Excel sheet could not be converted: {exc}") from None


def _parquet(data: bytes) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise _refuse(f"The Parquet file could not be read: {exc}") from None


# --- column names and types -----------------------------------------------------------------

_SPACE = re.compile(r"\s+")


def clean_names(raw_names: list[str], notes: list[str]) -> list[str]:
    """Column names that are not empty, not too long and distinct; each change noted."""
    names: list[str] = []
    seen: set[str] = set()
    changed: list[str] = []
    for index, raw in enumerate(raw_names):
        original = str(raw).split("\x00", 1)[0]
        name = _SPACE.sub(" ", original).strip()[:MAX_COLUMN_NAME] or f"column_{index + 1}"
        base, n = name, 2
        while name.lower() in seen:
            name = f"{base}_{n}"
            n += 1
        seen.add(name.lower())
        names.append(name)
        if name != original:
            changed.append(f"{original!r} -> {name!r}" if original else f"(empty) -> {name!r}")
    if changed:
        shown = "; ".join(changed[:5]) + (
            f"; and {len(changed) - 5} more" if len(changed) > 5 else ""
        )
        notes.append(f"Column names changed so each is distinct and not empty: {shown}.")
    return names


def _duck_type(kind: str) -> str:
    kind = kind.upper()
    if kind in (
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
    ):
        return "integer"
    if kind in ("FLOAT", "DOUBLE", "REAL") or kind.startswith("DECIMAL"):
        return "number"
    if kind == "BOOLEAN":
        return "boolean"
    if kind == "DATE":
        return "date"
    if kind.startswith("TIMESTAMP"):
        return "timestamp"
    if kind == "VARCHAR":
        return "text"
    return kind.lower()


def _arrow_type(kind: pa.DataType) -> str:
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_timestamp(kind):
        return "timestamp"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    return str(kind)
