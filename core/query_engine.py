"""DuckDB, in this process, walled in: the engine under every query over analysts' tables.

Each query runs on a cursor of one in-memory database per process that can reach no file, no
network and no extension, whose settings are locked (so a query cannot lift the walls), with a
memory limit, a row limit and a time limit (the query is interrupted). The tables come in as
Arrow tables decoded from the Parquet bytes stored in PostgreSQL, kept in a cache bounded in
bytes, so any app process can serve any table and a busy one does not decode the same table
twice.
"""

from __future__ import annotations

import io
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import InvalidInput, LedgerError

SANDBOX = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


class QueryFailed(InvalidInput):
    """DuckDB refused or stopped the query; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__("sql", message)


@dataclass(frozen=True)
class Limits:
    max_rows: int = 10_000
    seconds: float = 10.0
    memory_mb: int = 512
    threads: int = 2


@dataclass(frozen=True)
class Result:
    frame: pd.DataFrame
    truncated: bool  # more rows than max_rows: the frame holds the first max_rows
    elapsed_ms: float


_base_lock = threading.Lock()
_bases: dict[tuple[int, int], duckdb.DuckDBPyConnection] = {}


def connect(limits: Limits) -> duckdb.DuckDBPyConnection:
    """A connection to this process's sandboxed in-memory DuckDB (no files, network or
    extensions; settings locked). Each query takes a cursor of its own: what it registers is
    seen by it alone, and a cursor costs microseconds where a new database costs ~20 ms."""
    key = (int(limits.memory_mb), int(limits.threads))
    with _base_lock:
        base = _bases.get(key)
        if base is None:
            base = duckdb.connect(database=":memory:", config=dict(SANDBOX))
            base.execute(f"SET memory_limit = '{key[0]}MB'")
            base.execute(f"SET threads = {key[1]}")
            base.execute("SET lock_configuration = true")
            _bases[key] = base
        return base.cursor()


def run(
    sql: str,
    tables: Mapping[str, pa.Table],
    *,
    limits: Limits,
) -> Result:
    """Run a checked query (``core.sql_guard.check``) over ``tables`` (name -> Arrow)."""
    started = time.perf_counter()
    con = connect(limits)
    timer = threading.Timer(limits.seconds, con.interrupt)
    try:
        for name, table in tables.items():
            con.register(name, table)
        timer.start()
        cursor = con.execute(
            f"SELECT * FROM ({sql}) AS answer LIMIT {int(limits.max_rows) + 1}"  # noqa: S608 (checked)
        )
        kinds = [str(d[1]) for d in cursor.description or []]
        frame = _whole_numbers(cursor.df(), kinds)
    except duckdb.InterruptException:
        raise QueryFailed(
            f"The query ran longer than {limits.seconds:g} s and was stopped: narrow it (filter, "
            "aggregate) or avoid joining large tables without a condition."
        ) from None
    except duckdb.OutOfMemoryException:
        raise QueryFailed(
            f"The query needed more than {limits.memory_mb:,} MB and was stopped: aggregate "
            "or filter before joining."
        ) from None
    except duckdb.Error as exc:
        said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QueryFailed(f"DuckDB refused the query: {said}") from None
    finally:
        timer.cancel()
        con.close()
    truncated = len(frame) > limits.max_rows
    if truncated:
        frame = frame.head(limits.max_rows)
    return Result(frame, truncated, round((time.perf_counter() - started) * 1000, 1))


def _whole_numbers(frame: pd.DataFrame, kinds: list[str]) -> pd.DataFrame:
    """SUM over integers is a 128-bit integer in DuckDB, which pandas receives as floats: give
    such columns back as integers when they fit (sums of money in cents stay exact)."""
    for column, kind in zip(frame.columns, kinds, strict=False):
        if kind not in ("HUGEINT", "UHUGEINT") or not pd.api.types.is_float_dtype(frame[column]):
            continue
        values = frame[column].dropna()
        if (values % 1 == 0).all() and values.abs().max(skipna=True) < 2**53:
            frame[column] = frame[column].astype("Int64")
    return frame


# --- decoded tables ------------------------------------------------------------------------


class ArrowCache:
    """Decoded tables by key, the least recently used dropped once ``max_bytes`` is passed."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, pa.Table] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._bytes

    def get(self, key: str, load: Callable[[], bytes]) -> pa.Table:
        """The table under ``key``, decoded from ``load()``'s Parquet bytes if not cached."""
        with self._lock:
            table = self._items.get(key)
            if table is not None:
                self._items.move_to_end(key)
                return table
        table = from_parquet(load())
        with self._lock:
            if key not in self._items:
                self._items[key] = table
                self._bytes += table.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes
        return table

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def from_parquet(data: bytes) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise LedgerError(f"A stored table could not be read: {exc}") from None


def to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()
