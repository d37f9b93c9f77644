"""The check every SQL query over an analyst's tables passes before DuckDB runs it.

Parsed with sqlglot (DuckDB's dialect): exactly one statement, a query (SELECT, possibly with
WITH, UNION, INTERSECT or EXCEPT), reading only the tables it was given (and its own CTEs), and
calling no function that reads files, the network, settings or the catalog. Whatever the check
misses, the engine refuses too (``core.query_engine``: no file system, no extensions, settings
locked), so this is the first of two walls, the one whose refusals read well.
"""

from __future__ import annotations

from collections.abc import Collection

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from core.errors import InvalidInput

MAX_SQL_CHARS = 20_000
QUERY_KINDS = (exp.Select, exp.Union, exp.Intersect, exp.Except)
# Functions that touch files, the network, settings, extensions or the catalog, by name prefix.
FORBIDDEN_PREFIXES = (
    "read_",
    "parquet_",
    "sniff_",
    "glob",
    "query",
    "current_setting",
    "getenv",
    "duckdb_",
    "pragma_",
    "iceberg_",
    "delta_",
    "http",
    "s3",
    "load",
    "install",
    "export",
    "import",
    "copy",
    "which_secret",
    "test_",
    "checkpoint",
    "range",  # unbounded row generators (range, generate_series) make any table huge
    "generate_series",
    "repeat",
)


class UnsafeQuery(InvalidInput):
    """The query breaks a rule; the message says which, in words an analyst can act on."""

    def __init__(self, message: str) -> None:
        super().__init__("sql", message)


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return str(node.sql_name()).lower()


def check(sql: str, *, tables: Collection[str]) -> str:
    """``sql`` as DuckDB will run it, if it is one read-only query over ``tables``; else
    ``UnsafeQuery`` saying what is wrong."""
    if not isinstance(sql, str) or not sql.strip():
        raise UnsafeQuery("Write a SELECT query.")
    if len(sql) > MAX_SQL_CHARS:
        raise UnsafeQuery(f"The query is longer than {MAX_SQL_CHARS:,} characters.")
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except ParseError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "it could not be read"
        raise UnsafeQuery(f"The query is not valid SQL: {first}") from None
    if len(statements) != 1:
        raise UnsafeQuery(f"Send exactly one query (this is {len(statements)} statements).")
    (tree,) = statements
    if not isinstance(tree, QUERY_KINDS):
        kind = tree.key.upper() if hasattr(tree, "key") else type(tree).__name__
        raise UnsafeQuery(f"Only SELECT queries may run; this is {kind}.")
    allowed = {name.lower() for name in tables}
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for node in tree.walk():
        if isinstance(node, exp.Func) and _function_name(node).startswith(FORBIDDEN_PREFIXES):
            raise UnsafeQuery(
                f"The function {_function_name(node)}() is not allowed: queries read only the "
                "attached tables."
            )
        if isinstance(node, exp.Command | exp.Pragma | exp.Set | exp.Use):
            raise UnsafeQuery("Only SELECT queries may run.")
        if isinstance(node, exp.Table):
            _check_table(node, allowed, ctes)
    return tree.sql(dialect="duckdb")


def _check_table(node: exp.Table, allowed: set[str], ctes: set[str]) -> None:
    if not isinstance(node.this, exp.Identifier):
        raise UnsafeQuery("Queries read tables by name only (no table functions or files).")
    if node.args.get("db") or node.args.get("catalog"):
        raise UnsafeQuery(f"{node.sql(dialect='duckdb')}: name tables without a schema.")
    name = node.name.lower()
    if name not in allowed and name not in ctes:
        known = ", ".join(sorted(allowed)) or "none"
        raise UnsafeQuery(f"There is no attached table {node.name!r} (attached: {known}).")
