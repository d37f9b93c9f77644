"""Finding the passages of an analyst's documents that answer a question, in PostgreSQL.

    found = retrieval.search(db, user_id=me.id, query="segment revenue 2025")
    for hit in found.hits:
        print(hit.label, hit.excerpt)     # "10-K.pdf p. 47", words found marked ⟪like this⟫

Full-text search always: the question's words (stemmed by PostgreSQL's English configuration,
any of them) against each chunk's ``tsv``, ranked by ``ts_rank``. With an embedder
(EMBEDDING_MODEL) the question's vector is compared with the chunks' too: by pgvector's cosine
distance where the server has the extension, else exactly, in this process, over the owner's
chunks. Both at once ("hybrid") are fused by reciprocal rank. Only the owner's chunks are ever
searched.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.orm import Session

from core import embeddings
from core.errors import InvalidInput, LedgerError
from core.models import Document, DocumentChunk
from core.passages import MARK_END, MARK_START, Hit

Mode = Literal["hybrid", "text", "vector"]
MODES: tuple[Mode, ...] = ("hybrid", "text", "vector")
CANDIDATES = 50  # taken from each method before fusing
RRF_K = 60  # reciprocal rank fusion: score = sum of 1 / (RRF_K + rank)
MAX_QUERY_CHARS = 2_000
_HEADLINE = (
    f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=45, MinWords=20, "
    'MaxFragments=2, FragmentDelimiter=" … "'
)

# The question's words, any of them: PostgreSQL's own parser and stemmer make the lexemes
# (so a question matches exactly what to_tsvector made of the documents), quoted as literals.
_ANY_WORD = text(
    "SELECT to_tsquery('simple', string_agg(quote_literal(replace(lexeme, '\\', '')), ' | '))"
    " FROM unnest(to_tsvector('english', :query))"
)


@dataclass(frozen=True)
class Found:
    hits: list[Hit]
    mode: Mode  # how they were found (hybrid falls back to text when vectors cannot be used)
    note: str | None = None  # why a method was left out


_vector_servers: dict[str, bool] = {}
_S = TypeVar("_S", bound=Select[*tuple[Any, ...]])


def has_pgvector(db: Session) -> bool:
    """Whether the database has the vector extension installed (asked once per server)."""
    bind = db.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    key = engine.url.render_as_string(hide_password=True)
    if key not in _vector_servers:
        found = db.scalar(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'"))
        _vector_servers[key] = found is not None
    return _vector_servers[key]


def _clean_query(query: str) -> str:
    cleaned = " ".join(str(query or "").split())[:MAX_QUERY_CHARS]
    if not cleaned:
        raise InvalidInput("query", "Type some words to search for.")
    return cleaned


def _scope(stmt: _S, user_id: uuid.UUID, documents: list[uuid.UUID] | None) -> _S:
    stmt = stmt.where(DocumentChunk.user_id == user_id)
    if documents is not None:
        stmt = stmt.where(DocumentChunk.document_id.in_(documents))
    return stmt


def _text_ranked(
    db: Session, user_id: uuid.UUID, query: str, documents: list[uuid.UUID] | None, n: int
) -> list[tuple[int, float]]:
    tsquery = db.scalar(_ANY_WORD, {"query": query})
    if tsquery is None:  # only stop words ("what is the")
        return []
    q = func.to_tsquery("simple", bindparam("tsq", str(tsquery)))
    rank = func.ts_rank(DocumentChunk.tsv, q)
    stmt = select(DocumentChunk.id, rank).where(DocumentChunk.tsv.op("@@")(q))
    stmt = _scope(stmt, user_id, documents).order_by(rank.desc(), DocumentChunk.id).limit(n)
    return [(int(i), float(s)) for i, s in db.execute(stmt)]


def _vector_ranked(
    db: Session,
    user_id: uuid.UUID,
    vector: list[float],
    model: str,
    documents: list[uuid.UUID] | None,
    n: int,
) -> list[tuple[int, float]]:
    owned_by_model = DocumentChunk.document_id.in_(
        select(Document.id).where(Document.user_id == user_id, Document.embedding_model == model)
    )
    if has_pgvector(db):
        distance = cast(DocumentChunk.embedding, Vector).cosine_distance(vector)
        stmt = select(DocumentChunk.id, 1 - distance).where(owned_by_model)
        stmt = _scope(stmt, user_id, documents).order_by(distance, DocumentChunk.id).limit(n)
        return [(int(i), float(s)) for i, s in db.execute(stmt)]
    # No pgvector on this server: the same exact cosine ranking, computed here.
    stmt = select(DocumentChunk.id, DocumentChunk.embedding).where(owned_by_model)
    rows = db.execute(_scope(stmt, user_id, documents)).all()
    if not rows:
        return []
    ids = np.array([r[0] for r in rows])
    matrix = np.array([r[1] for r in rows], dtype=np.float32)
    scores = matrix @ np.asarray(vector, dtype=np.float32)
    order = np.lexsort((ids, -scores))[:n]
    return [(int(ids[i]), float(scores[i])) for i in order]


def _fuse(*rankings: list[tuple[int, float]]) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, (chunk_id, _) in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def _hits(db: Session, ranked: list[tuple[int, float]], query: str) -> list[Hit]:
    if not ranked:
        return []
    tsquery = db.scalar(_ANY_WORD, {"query": query})
    q = func.to_tsquery("simple", bindparam("tsq", str(tsquery or "")))
    english: ColumnElement[Any] = literal_column("'english'::regconfig")
    headline = (
        func.ts_headline(english, DocumentChunk.content, q, _HEADLINE)
        if tsquery is not None
        else func.left(DocumentChunk.content, 300)
    )
    stmt = (
        select(
            DocumentChunk.id,
            DocumentChunk.document_id,
            Document.name,
            DocumentChunk.page,
            DocumentChunk.heading,
            DocumentChunk.content,
            headline,
        )
        .join(Document, Document.id == DocumentChunk.document_id)
        .where(DocumentChunk.id.in_([chunk_id for chunk_id, _ in ranked]))
    )
    rows = {row[0]: row for row in db.execute(stmt)}
    return [
        Hit(int(i), row[1], row[2], int(row[3]), row[4], row[5], row[6], score)
        for i, score in ranked
        if (row := rows.get(i)) is not None
    ]


def search(
    db: Session,
    *,
    user_id: uuid.UUID,
    query: str,
    documents: list[uuid.UUID] | None = None,
    limit: int = 10,
    mode: Mode = "hybrid",
    embedder: embeddings.Embedder | bool | None = True,
) -> Found:
    """The owner's passages that best answer ``query``, best first (in ``documents`` only,
    when given). ``mode="hybrid"`` uses vectors when an embedder is set (``embedder=True``:
    EMBEDDING_MODEL) and full-text search alone otherwise; ``"text"`` and ``"vector"`` force
    one method (``"vector"`` without an embedder is ``InvalidInput``)."""
    if mode not in MODES:
        raise InvalidInput("mode", f"Search mode is one of {', '.join(MODES)}.")
    query = _clean_query(query)
    limit = max(1, min(int(limit), CANDIDATES))
    chosen = embeddings.get_embedder() if embedder is True else embedder or None
    if mode == "vector" and chosen is None:
        raise InvalidInput("mode", "Vector search needs an embedding model (EMBEDDING_MODEL).")
    if documents is not None and not documents:
        return Found([], mode)
    note = None
    vector_ranked: list[tuple[int, float]] | None = None
    if mode != "text" and chosen is not None:
        try:
            vector = chosen.embed([query])[0]
            vector_ranked = _vector_ranked(db, user_id, vector, chosen.name, documents, CANDIDATES)
        except LedgerError as exc:
            if mode == "vector":
                raise
            note = str(exc)
    if mode == "vector":
        assert vector_ranked is not None
        return Found(_hits(db, vector_ranked[:limit], query), "vector")
    text_ranked = _text_ranked(db, user_id, query, documents, CANDIDATES)
    if vector_ranked is None:
        return Found(_hits(db, text_ranked[:limit], query), "text", note)
    return Found(_hits(db, _fuse(text_ranked, vector_ranked)[:limit], query), "hybrid", note)
