"""DATA_DIR: where the embedded servers, the generated cookie key and nothing else live.

A folder is Ledger's when it carries the ``.ledger-data`` marker (or is new or empty); any other
non-empty folder is refused and left exactly as it was, so pointing DATA_DIR at the wrong place
can never initialise databases inside it.
"""

from __future__ import annotations

import functools
from pathlib import Path

from core.errors import DataDirectoryError

DATA_MARKER = ".ledger-data"


def real_path(path: Path) -> Path:
    """``path`` with ``~`` expanded and symlinks resolved; remembered when ``path`` is absolute.

    Pages find DATA_DIR several times a run, and resolving costs a system call per path part:
    under load each one gives up the GIL and queues behind the other streams to get it back.
    """
    return _real_absolute(path) if path.is_absolute() else path.expanduser().resolve()


@functools.lru_cache(maxsize=64)
def _real_absolute(path: Path) -> Path:
    return path.resolve()


def prepare_data_dir(path: Path) -> Path:
    """Create DATA_DIR (with its marker) or check that an existing one is ours.

    A non-empty directory without the marker is refused and left untouched: pointing
    DATA_DIR at the wrong folder must never let the app initialise databases inside it.
    """
    path = real_path(path)
    marker = path / DATA_MARKER
    if path.exists() and not path.is_dir():
        raise DataDirectoryError(
            f"DATA_DIR {path} is a file, not a folder; nothing was changed. "
            "Set DATA_DIR to a new or empty folder."
        )
    try:
        if path.is_dir() and not marker.exists() and any(path.iterdir()):
            raise DataDirectoryError(
                f"DATA_DIR {path} is not a Ledger data folder: it is not empty and has no "
                f"{DATA_MARKER} file; nothing was changed. Set DATA_DIR to a new or empty "
                "folder, or to the one Ledger created before."
            )
        path.mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            marker.write_text("Ledger data folder: the embedded PostgreSQL and Redis live here.\n")
    except PermissionError as exc:
        raise DataDirectoryError(
            f"DATA_DIR {path} cannot be used: {exc.strerror} ({exc.filename})"
        ) from None
    return path
