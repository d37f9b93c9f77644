"""Documents read in the background: a 2,000-page report takes a while, and the page stays
usable meanwhile (its progress is redrawn every second; every other widget still answers).

A job runs ``core.documents.add`` on its own thread with its own transaction; it touches no
Streamlit object, only its own fields, which the page reads. Jobs live in the browser
session's state: leaving the page does not stop one, and coming back shows where it is.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from core import database, documents
from core.errors import LedgerError, first_line


@dataclass
class Job:
    name: str
    size: int
    stage: str = "waiting"  # waiting, reading, indexing, done, failed
    done: int = 0
    total: int = 0
    added: documents.Added | None = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    _thread: threading.Thread | None = None

    @property
    def finished(self) -> bool:
        return self.stage in ("done", "failed")

    @property
    def fraction(self) -> float:
        if self.finished:
            return 1.0
        if not self.total:
            return 0.0
        # Reading the pages is most of the work; indexing the chunks the rest.
        part = self.done / self.total
        return 0.8 * part if self.stage == "reading" else 0.8 + 0.2 * part

    @property
    def status(self) -> str:
        if self.stage == "reading" and self.total:
            return f"Reading page {self.done:,} of {self.total:,}"
        if self.stage == "indexing" and self.total:
            return f"Indexing passage {self.done:,} of {self.total:,}"
        return {"waiting": "Waiting to start", "done": "Done", "failed": "Failed"}.get(
            self.stage, self.stage.capitalize()
        )

    def progress(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, total

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.finished


_running = 0
_running_lock = threading.Lock()


def running_count() -> int:
    """Documents being read by this process (a draining process waits for them)."""
    return _running


def _run(job: Job, user_id: uuid.UUID, data: bytes) -> None:
    global _running
    with _running_lock:
        _running += 1
    try:
        with database.session_scope() as db:
            job.added = documents.add(
                db, user_id=user_id, filename=job.name, data=data, progress=job.progress
            )
        job.stage = "done"
    except LedgerError as exc:
        job.error, job.stage = str(exc), "failed"
    except SQLAlchemyError as exc:
        job.error = f"The document could not be stored ({first_line(exc)}); nothing was kept."
        job.stage = "failed"
    except Exception as exc:  # a thread's error is shown, never lost
        job.error = f"Unexpected error: {type(exc).__name__}: {exc}. Nothing was kept."
        job.stage = "failed"
    finally:
        with _running_lock:
            _running -= 1


def start(user_id: uuid.UUID, name: str, data: bytes) -> Job:
    """Read and store one document on a new thread; the returned job reports on it."""
    job = Job(name=name, size=len(data))
    job._thread = threading.Thread(
        target=_run, args=(job, user_id, data), name=f"document-{name[:40]}", daemon=True
    )
    job._thread.start()
    return job
