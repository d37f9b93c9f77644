"""A separate process that uses core's services, driven line by line over stdin/stdout.

The multi-process tests start several of these with their own DATA_DIR: each line in is a
command, each line out is one JSON answer. ``exit`` leaves normally (exit hooks run); the
tests SIGKILL a worker to simulate a crash.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

from sqlalchemy import text

from core import database, history, services
from core.config import get_settings
from core.embedded import postgres as embedded_postgres
from core.embedded import redis as embedded_redis

PROBE_TABLE = text("CREATE TABLE IF NOT EXISTS probe (k text PRIMARY KEY, v text)")


def _pids() -> dict[str, Any]:
    data_dir = get_settings().data_dir
    return {
        "postmaster": embedded_postgres.embedded_postgres_pid(data_dir),
        "redis": embedded_redis.embedded_redis_pid(data_dir),
    }


def handle(command: str, args: list[str]) -> Any:
    if command == "start":
        database.get_engine()  # starts or attaches to the embedded PostgreSQL
        services.redis_client()
        return _pids()
    if command == "pids":
        return _pids()
    if command == "ping":  # connects to both servers, writes nothing
        services.ping_postgres(database.get_engine())
        services.ping_redis(services.redis_client())
        return "ok"
    if command == "pg-put":
        with database.session_scope() as s:
            s.execute(PROBE_TABLE)
            s.execute(
                text("INSERT INTO probe VALUES (:k, :v) ON CONFLICT (k) DO UPDATE SET v = :v"),
                {"k": args[0], "v": args[1]},
            )
        return "ok"
    if command == "pg-get":
        with database.session_scope() as s:
            s.execute(PROBE_TABLE)
            return s.execute(text("SELECT v FROM probe WHERE k = :k"), {"k": args[0]}).scalar()
    if command == "history-append":
        message = history.make_message("user", " ".join(args[1:]))
        return history.append(
            services.redis_client(), session_id=uuid.UUID(args[0]), message=message
        )
    if command == "history-read":
        return [m["content"] for m in history.read_all(services.redis_client(), session_id=args[0])]
    raise ValueError(f"unknown command {command!r}")


def main() -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)  # pgserver reports failed commands this way
    for line in sys.stdin:
        command, *args = line.split()
        if command == "exit":
            break
        try:
            answer = {"ok": handle(command, args)}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
