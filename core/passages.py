"""A passage found in an analyst's documents: what ``core.retrieval`` returns, what
``core.citations`` numbers as a source and the Documents page shows.

Kept apart from retrieval (NumPy, pgvector) so that a reply's citations can be checked, and a
chat without documents started, without loading either.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

MARK_START, MARK_END = "⟪", "⟫"  # around the words found, in ``Hit.excerpt``


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: uuid.UUID
    document: str  # the document's name
    page: int
    heading: str | None
    text: str
    excerpt: str  # the passage around the words found, marked with MARK_START / MARK_END
    score: float

    @property
    def label(self) -> str:
        return f"{self.document} p. {self.page}"
