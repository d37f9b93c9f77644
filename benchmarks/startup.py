"""`make run` warm start: time until the app answers HTTP (PERFORMANCE.md: under 5 s).

Runs the real command, ``make run PORT=<free port>``, on a machine where the environment is
already built (``make install`` done), with the embedded PostgreSQL and Redis in a temporary
DATA_DIR, and polls until both ``/_stcore/health`` answers ``ok`` and ``/healthz`` answers
JSON with status ``ok`` (which needs PostgreSQL and Redis). Then stops the app with SIGTERM,
as a terminal's Ctrl+C or a container stop would, and checks that the embedded servers
stopped with it.

The first start creates the databases (initdb); it is reported apart. The target is for the
starts after it: the data folder exists, the servers are stopped.

    .venv/bin/python benchmarks/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> tuple[int, str, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (http://127.0.0.1)
            return resp.status, resp.headers.get("content-type", ""), resp.read()
    except (urllib.error.URLError, OSError):
        return None


def stcore_ok(port: int) -> bool:
    got = answers(f"http://127.0.0.1:{port}/_stcore/health")
    return got is not None and got[0] == 200 and got[2].strip() == b"ok"


def healthz_ok(port: int) -> bool:
    got = answers(f"http://127.0.0.1:{port}/healthz")
    return (
        got is not None
        and got[0] == 200
        and got[1].startswith("application/json")
        and json.loads(got[2]).get("status") == "ok"
    )


def one_start(data_dir: Path, log: Path) -> dict[str, float]:
    port = free_port()
    env = dict(os.environ, DATA_DIR=str(data_dir), DATABASE_URL="", REDIS_URL="")
    started = time.perf_counter()
    with log.open("a") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    times: dict[str, float] = {}
    try:
        while "healthz" not in times:
            if proc.poll() is not None:
                raise SystemExit(f"make run exited with {proc.returncode}; see {log}")
            if time.perf_counter() - started > 120:
                raise SystemExit(f"no answer after 120 s; see {log}")
            if "_stcore/health" not in times:
                if stcore_ok(port):
                    times["_stcore/health"] = time.perf_counter() - started
            elif healthz_ok(port):  # the first /healthz starts PostgreSQL and Redis
                times["healthz"] = time.perf_counter() - started
            time.sleep(0.02)
    finally:
        stop = time.perf_counter()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise SystemExit(f"the app did not stop within 30 s of SIGTERM; see {log}") from None
    times["stop"] = time.perf_counter() - stop
    if (data_dir / "postgres" / "postmaster.pid").exists():
        raise SystemExit("the embedded PostgreSQL still runs after the app stopped")
    if json.loads((data_dir / "redis" / ".clients.json").read_text() or "[]"):
        raise SystemExit("the embedded Redis still lists clients after the app stopped")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    stamp = ROOT / ".venv" / ".installed"
    if not stamp.exists() or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        print("build the environment first: make install", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="ledger-bench-startup-"))
    log = work / "make-run.log"
    try:
        first = one_start(work / "data", log)
        print(
            f"first start (creates the databases): app answers /healthz after "
            f"{first['healthz']:.2f} s (/_stcore/health {first['_stcore/health']:.2f} s)"
        )
        runs = [one_start(work / "data", log) for _ in range(args.runs)]
        for key in ("_stcore/health", "healthz", "stop"):
            values = sorted(r[key] for r in runs)
            print(
                f"warm start, {key:<15} median {statistics.median(values):5.2f} s   "
                f"max {values[-1]:5.2f} s   ({len(values)} runs)"
            )
        median = statistics.median(r["healthz"] for r in runs)
        ok = median < TARGET_S
        print(f"target: answering in under {TARGET_S:g} s   {'ok' if ok else 'MISSED'}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
