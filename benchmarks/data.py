"""Analysts' tables: upload and first query of a 1,000,000-row CSV, and a typical aggregate,
against plain DuckDB on the same file, side by side in one run.

Runs on an embedded PostgreSQL and Redis of its own in a temporary folder (whatever a .env
says), removed at the end. Each round times, alternately:

- ingest: ``core.data.upload`` (read with DuckDB, check, Parquet, store in PostgreSQL, commit)
  vs plain DuckDB reading the file into a table (``CREATE TABLE AS SELECT * FROM read_csv``),
  and vs plain DuckDB turning it into Parquet (``read_csv(...).write_parquet``, the codec the
  app uses): the least any upload that keeps a columnar copy costs, before storing it;
- first query: ``core.data.query`` right after the upload (rows fetched from PostgreSQL and
  decoded, then the checked query in the sandbox) vs the same SQL on plain DuckDB's table;
- warm query: the same aggregate again (decoded table cached) vs plain DuckDB again.

Targets (issue 16): ingest <= 1.5x plain DuckDB's read; a query <= 1.2x plain DuckDB + 20 ms;
the app process's memory bounded (DATA_CACHE_MB; its resident size is printed).

    .venv/bin/python benchmarks/data.py [--rows 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import duckdb
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workspace import embedded_workspace

SQL = (
    "SELECT segment, date_trunc('month', day) AS month, sum(revenue) AS revenue, "
    "sum(revenue - cost) AS gross_profit, count(*) AS orders "
    "FROM sales GROUP BY 1, 2 ORDER BY 1, 2"
)


def make_csv(path: Path, rows: int) -> None:
    rng = random.Random(7)
    segments = ["Retail", "Wholesale", "Online", "Partners"]
    regions = ["North", "South", "East", "West", "Central"]
    with path.open("w") as out:
        out.write("day,segment,region,revenue,cost\n")
        for n in range(rows):
            revenue = round(rng.uniform(10, 5000), 2)
            out.write(
                f"2024-{1 + n % 12:02d}-{1 + n % 28:02d},{rng.choice(segments)},"
                f"{rng.choice(regions)},{revenue},{round(revenue * rng.uniform(0.4, 0.9), 2)}\n"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with embedded_workspace("data", DATA_UPLOAD_MAX_MB="1024") as work:
        return measure(work, rows=args.rows, rounds=args.rounds)


def measure(work: Path, *, rows: int, rounds: int) -> int:
    from core import accounts, data, database, ingest, migrate
    from core.config import get_settings

    get_settings.cache_clear()
    csv_path = work / "sales.csv"
    make_csv(csv_path, rows)
    raw = csv_path.read_bytes()
    migrate.upgrade(database.get_engine())
    with database.session_scope() as session:
        user = accounts.create_user(
            session, username="bench", email="b@example.com", display_name="B",
            password="bench passphrase",  # noqa: S106 (a throwaway account)
        )  # fmt: skip
        uid = user.id
    process = psutil.Process()
    rss_start = process.memory_info().rss

    times: dict[str, list[float]] = {
        k: []
        for k in ("ingest", "plain read", "plain parquet", "first", "plain q1", "warm", "plain q2")
    }
    for n in range(rounds):
        started = time.perf_counter()
        con = duckdb.connect()
        con.execute(f"CREATE TABLE sales AS SELECT * FROM read_csv('{csv_path}')")  # noqa: S608
        times["plain read"].append(time.perf_counter() - started)

        started = time.perf_counter()
        with duckdb.connect() as convert:
            convert.read_csv(str(csv_path)).write_parquet(
                str(work / "plain.parquet"), compression=ingest.COMPRESSION
            )
        times["plain parquet"].append(time.perf_counter() - started)

        started = time.perf_counter()
        with database.session_scope() as session:
            data.upload(session, user_id=uid, filename="sales.csv", data=raw, name=f"sales{n}")
        times["ingest"].append(time.perf_counter() - started)

        sql = SQL.replace("FROM sales", f"FROM sales{n}")
        started = time.perf_counter()
        with database.session_scope() as session:
            answer = data.query(session, user_id=uid, sql=sql, tables=[f"sales{n}"])
        times["first"].append(time.perf_counter() - started)
        started = time.perf_counter()
        plain = con.execute(SQL).df()
        times["plain q1"].append(time.perf_counter() - started)

        started = time.perf_counter()
        plain = con.execute(SQL).df()
        times["plain q2"].append(time.perf_counter() - started)
        started = time.perf_counter()
        with database.session_scope() as session:
            answer = data.query(session, user_id=uid, sql=sql, tables=[f"sales{n}"])
        times["warm"].append(time.perf_counter() - started)
        assert len(answer.frame) == len(plain), (len(answer.frame), len(plain))
        con.close()

    def med(key: str) -> float:
        return statistics.median(times[key]) * 1000

    size_mb = len(raw) / 1024 / 1024
    print(f"analysts' tables: {rows:,}-row CSV ({size_mb:.1f} MB), {rounds} rounds, medians")
    print(f"  ingest (core.data.upload)         {med('ingest'):8.1f} ms")
    print(f"  plain DuckDB read_csv             {med('plain read'):8.1f} ms")
    ratio = med("ingest") / med("plain read")
    print(f"  ingest / plain read               {ratio:8.2f}x   (target <= 1.5x)")
    floor = med("plain parquet")
    share = floor / med("plain read")
    print(f"  plain DuckDB CSV -> Parquet       {floor:8.1f} ms  ({share:.2f}x the read)")
    print(f"  ingest / plain CSV -> Parquet     {med('ingest') / floor:8.2f}x")
    first, warm = med("first"), med("warm")
    print(f"  first query after upload          {first:8.1f} ms  (plain {med('plain q1'):.1f} ms)")
    print(f"  warm aggregate query              {warm:8.1f} ms  (plain {med('plain q2'):.1f} ms)")
    limit = 1.2 * med("plain q2") + 20
    verdict = "met" if warm <= limit else "MISSED"
    print(f"  warm query target (1.2x plain + 20 ms) {limit:8.1f} ms: {verdict}")
    cache = data._cache(get_settings())
    rss = process.memory_info().rss
    print(
        f"  memory: decoded-table cache {cache.size / 1024 / 1024:.1f} MB (bound "
        f"{get_settings().data_cache_mb} MB); process RSS {rss_start / 2**20:.0f} -> "
        f"{rss / 2**20:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
