"""A benchmark's scratch workspace: its own embedded PostgreSQL and Redis in a temporary
DATA_DIR (whatever a .env configures), removed with everything in it afterwards."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def embedded_workspace(name: str, **settings: str) -> Iterator[Path]:
    """The scratch folder; ``settings`` are extra environment variables for core."""
    work = Path(tempfile.mkdtemp(prefix=f"ledger-bench-{name}-"))
    os.environ.update(
        {
            "DATA_DIR": str(work / "data"),
            "DATABASE_URL": "",  # blank: the embedded servers, whatever a .env says
            "REDIS_URL": "",
            "AUTH_COOKIE_KEY": "bench-" + "q7w8e9" * 8,
            **settings,
        }
    )
    try:
        yield work
    finally:
        from core import database, services  # after the environment is set

        database.reset()
        services.shutdown()  # the embedded servers' last user leaves: they stop
        shutil.rmtree(work, ignore_errors=True)
