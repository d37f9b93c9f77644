"""A document's pages cut into chunks for retrieval: each keeps its page (never spanning two,
so a citation names one page) and the heading it stands under (carried across pages)."""

from __future__ import annotations

from dataclasses import dataclass

from core.extract import Page, heading_at

SIZE = 900  # characters a chunk holds at most (about 200 tokens)
OVERLAP = 150  # characters repeated from the chunk before, so a fact split between is whole


@dataclass(frozen=True)
class Chunk:
    page: int
    heading: str | None
    ordinal: int  # position in the document, 0-based
    text: str


def _cut(text: str, start: int, size: int) -> int:
    """Where a chunk starting at ``start`` ends: at a paragraph, line or sentence break in
    its last 40 %, else at ``size``."""
    end = start + size
    if end >= len(text):
        return len(text)
    floor = start + int(size * 0.6)
    for mark in ("\n\n", "\n", ". ", "; ", " "):
        at = text.rfind(mark, floor, end)
        if at != -1:
            return at + len(mark)
    return end


def split(pages: list[Page], *, size: int = SIZE, overlap: int = OVERLAP) -> list[Chunk]:
    chunks: list[Chunk] = []
    heading: str | None = None
    for page in pages:
        text = page.text
        start = 0
        while start < len(text):
            end = _cut(text, start, size)
            piece = " ".join(text[start:end].split())
            heading = heading_at(page, end - 1) or heading
            if piece:
                chunks.append(Chunk(page.number, heading, len(chunks), piece))
            if end >= len(text):
                break
            start = max(start + 1, end - overlap)
            space = text.find(" ", start, end)  # start the overlap at a word
            start = space + 1 if space != -1 else start
    return chunks
