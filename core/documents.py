"""Analysts' own documents (filings, reports, notes): upload, list, open, delete, attach to a chat.

    added = documents.add(db, user_id=me.id, filename="10-K.pdf", data=raw)
    hits = retrieval.search(db, user_id=me.id, query="segment revenue 2025")

A document belongs to its owner: another user's reads "Document not found.", exactly like one
that does not exist. Its text is kept in PostgreSQL as page-bounded chunks (``core.chunks``)
that PostgreSQL indexes by their words; with an embedder (EMBEDDING_MODEL) each chunk also
gets a vector. The file itself is kept too, so it can be downloaded again. The same file
uploaded twice (same SHA-256) is refused, naming the copy already there.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import delete as sql_delete
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from core import chunks, embeddings, extract, sessions
from core.clock import now
from core.config import Settings, get_settings
from core.errors import Conflict, InvalidInput, LedgerError, NotFound
from core.models import Document, DocumentChunk, SessionDocument, User

EMBED_BATCH = 64  # chunks sent to the embedder at once
MAX_NAME = 255

# (stage, done, total): "reading" pages, then "indexing" chunks. A page shows a progress bar.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DocumentInfo:
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    file_format: str
    file_bytes: int
    pages: int
    chunk_count: int
    embedding_model: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: Document) -> DocumentInfo:
        return cls(
            row.id,
            row.user_id,
            row.name,
            row.file_format,
            row.file_bytes,
            row.pages,
            row.chunk_count,
            row.embedding_model,
            row.created_at,
        )


@dataclass(frozen=True)
class Added:
    document: DocumentInfo
    notes: list[str] = field(default_factory=list)


def check_size(size: int, settings: Settings | None = None) -> None:
    """Refuse a file over DOCUMENT_UPLOAD_MAX_MB before it is read."""
    limit = (settings or get_settings()).document_upload_max_mb
    if size > limit * 1024 * 1024:
        raise InvalidInput(
            "file",
            f"The file is {size / 1024 / 1024:,.1f} MB; the limit is {limit:g} MB "
            "(DOCUMENT_UPLOAD_MAX_MB).",
        )


def _display_name(filename: str) -> str:
    name = " ".join(Path(filename or "document").name.split())
    return name[:MAX_NAME] or "document"


def add(
    db: Session,
    *,
    user_id: uuid.UUID,
    filename: str,
    data: bytes,
    progress: Progress | None = None,
    embedder: embeddings.Embedder | bool | None = True,
    settings: Settings | None = None,
) -> Added:
    """Read ``data`` (PDF, HTML, Markdown, text), cut it into chunks and store it.

    ``embedder=True`` uses the configured one (EMBEDDING_MODEL; none by default); pass an
    ``Embedder`` or None to choose. An embedder that does not answer leaves the document
    searchable by its words, with a note saying so. Raises ``InvalidInput`` for a file that
    cannot be read (the reason in the message) and ``Conflict`` for one already uploaded.
    """
    settings = settings or get_settings()
    check_size(len(data), settings)
    extract.file_format(filename)  # the type is refused before anything is read
    digest = hashlib.sha256(data).hexdigest()
    same = db.scalars(
        select(Document).where(Document.user_id == user_id, Document.sha256 == digest)
    ).first()
    if same is not None:
        raise Conflict(
            f"You uploaded this file already, as {same.name} on "
            f"{same.created_at:%Y-%m-%d %H:%M} UTC.",
            field="file",
        )

    def pages_read(done: int, total: int) -> None:
        if progress is not None:
            progress("reading", done, total)

    found = extract.extract(filename, data, progress=pages_read)
    pieces = chunks.split(found.pages)
    chosen = embeddings.get_embedder(settings, bulk=True) if embedder is True else embedder or None
    notes = list(found.notes)
    vectors: list[list[float]] | None = None
    if chosen is not None:
        try:
            vectors = _embed(chosen, [c.text for c in pieces], progress)
        except LedgerError as exc:
            notes.append(str(exc))
            vectors = None
    row = Document(
        id=uuid.uuid4(),
        user_id=user_id,
        name=_display_name(filename),
        file_format=found.fmt,
        file_bytes=len(data),
        sha256=digest,
        pages=len(found.pages),
        chunk_count=len(pieces),
        embedding_model=chosen.name if chosen is not None and vectors is not None else None,
        content=data,
        created_at=now(),
    )
    db.add(row)
    db.flush()
    rows = [
        {
            "document_id": row.id,
            "user_id": user_id,
            "page": c.page,
            "ordinal": c.ordinal,
            "heading": c.heading,
            "content": c.text,
            "embedding": vectors[i] if vectors is not None else None,
        }
        for i, c in enumerate(pieces)
    ]
    for start in range(0, len(rows), 1000):
        db.execute(insert(DocumentChunk), rows[start : start + 1000])
    db.flush()
    if progress is not None:
        progress("indexing", len(pieces), len(pieces))
    return Added(DocumentInfo.of(row), notes)


def _embed(
    embedder: embeddings.Embedder, texts: list[str], progress: Progress | None
) -> list[list[float]]:
    vectors: list[list[float]] = []
    for start in range(0, len(texts), EMBED_BATCH):
        vectors.extend(embedder.embed(texts[start : start + EMBED_BATCH]))
        if progress is not None:
            progress("indexing", len(vectors), len(texts))
    return vectors


def list_documents(db: Session, *, user_id: uuid.UUID) -> list[DocumentInfo]:
    """The owner's documents, newest first."""
    rows = db.scalars(
        select(Document)
        .where(Document.user_id == user_id)
        .order_by(Document.created_at.desc(), Document.name)
    )
    return [DocumentInfo.of(row) for row in rows]


def _owned(db: Session, user_id: uuid.UUID, document: uuid.UUID) -> Document:
    row = None
    if isinstance(document, uuid.UUID):
        row = db.scalars(
            select(Document).where(Document.id == document, Document.user_id == user_id)
        ).one_or_none()
    if row is None:
        raise NotFound("Document not found.")
    return row


def get(db: Session, *, user_id: uuid.UUID, document: uuid.UUID) -> DocumentInfo:
    return DocumentInfo.of(_owned(db, user_id, document))


def content(db: Session, *, user_id: uuid.UUID, document: uuid.UUID) -> bytes:
    """The file as it was uploaded."""
    row = _owned(db, user_id, document)
    return bytes(db.scalar(select(Document.content).where(Document.id == row.id)) or b"")


def page_text(db: Session, *, user_id: uuid.UUID, document: uuid.UUID, page: int) -> str:
    """The text of one page, as it was read (its chunks, their overlaps removed)."""
    row = _owned(db, user_id, document)
    parts = list(
        db.scalars(
            select(DocumentChunk.content)
            .where(DocumentChunk.document_id == row.id, DocumentChunk.page == page)
            .order_by(DocumentChunk.ordinal)
        )
    )
    return _join_overlapping(parts)


def _join_overlapping(parts: list[str]) -> str:
    """Chunks of one page back into its text: each repeats the end of the one before."""
    text = ""
    longest = chunks.OVERLAP + 50
    for part in parts:
        sizes = range(min(len(text), len(part), longest), 9, -1)
        cut = next((size for size in sizes if text.endswith(part[:size])), 0)
        rest = part[cut:].strip()
        text = f"{text} {rest}".strip() if rest else text
    return text


def delete(db: Session, *, user_id: uuid.UUID, document: uuid.UUID) -> None:
    """Delete the document, its chunks, and its place in every chat."""
    row = _owned(db, user_id, document)
    db.execute(sql_delete(Document).where(Document.id == row.id, Document.user_id == user_id))
    db.flush()
    db.expunge(row)


def owners(db: Session) -> pd.DataFrame:
    """Whose documents exist and how big they are (for administrators; no contents)."""
    stmt = (
        select(
            User.username,
            func.count(Document.id),
            func.coalesce(func.sum(Document.pages), 0),
            func.coalesce(func.sum(Document.file_bytes), 0),
        )
        .join(Document, Document.user_id == User.id)
        .group_by(User.username)
        .order_by(User.username)
    )
    columns = ["username", "documents", "pages", "bytes"]
    return pd.DataFrame.from_records([tuple(r) for r in db.execute(stmt)], columns=columns)


# --- documents in a chat -------------------------------------------------------------------


def attach(
    db: Session, *, user_id: uuid.UUID, session_id: uuid.UUID, documents: list[uuid.UUID]
) -> list[DocumentInfo]:
    """Make ``documents`` (the owner's) the ones this chat answers from."""
    sessions.get_for_owner(db, user_id=user_id, session_id=session_id)  # NotFound otherwise
    rows = [_owned(db, user_id, d) for d in documents]
    db.execute(sql_delete(SessionDocument).where(SessionDocument.session_id == session_id))
    for row in rows:
        db.add(SessionDocument(session_id=session_id, document_id=row.id))
    db.flush()
    return [DocumentInfo.of(r) for r in rows]


def choices(
    db: Session, *, user_id: uuid.UUID, session_id: uuid.UUID | None
) -> tuple[dict[uuid.UUID, str], list[uuid.UUID]]:
    """For a chat's document picker, on every run of the chat page: the owner's documents by
    id (names only) and those attached to the session; the second read only when there are
    documents."""
    names = dict(
        db.execute(
            select(Document.id, Document.name)
            .where(Document.user_id == user_id)
            .order_by(Document.created_at.desc(), Document.name)
        ).all()
    )
    if not names or session_id is None:
        return names, []
    chosen = db.scalars(
        select(SessionDocument.document_id).where(SessionDocument.session_id == session_id)
    )
    return names, [d for d in chosen if d in names]


def attached(db: Session, *, user_id: uuid.UUID, session_id: uuid.UUID) -> list[DocumentInfo]:
    rows = db.scalars(
        select(Document)
        .join(SessionDocument, SessionDocument.document_id == Document.id)
        .where(SessionDocument.session_id == session_id, Document.user_id == user_id)
        .order_by(Document.name)
    )
    return [DocumentInfo.of(r) for r in rows]
