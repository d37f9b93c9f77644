"""The text of an uploaded document, page by page: PDF (pypdf), HTML, Markdown, plain text.

A document that has no text to read is refused with the reason: encrypted, damaged, or a
scan with no text layer (Ledger does no OCR). HTML is read, never rendered: scripts, styles
and comments are dropped. Page numbers are the PDF's own (1-based); HTML, Markdown and text
are one page, or one per form feed in a text file.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

from pypdf import PageObject, PdfReader
from pypdf.errors import FileNotDecryptedError, PdfReadError, PdfStreamError

from core.errors import InvalidInput

FORMATS = {
    ".pdf": "pdf",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
}

Progress = Callable[[int, int], None]  # (pages done, pages in all)


@dataclass(frozen=True)
class Page:
    number: int
    text: str
    headings: tuple[tuple[int, str], ...] = ()  # (character offset, heading) found in the text


@dataclass
class Extracted:
    fmt: str
    pages: list[Page]
    notes: list[str] = field(default_factory=list)
    title: str | None = None


def _refuse(message: str) -> InvalidInput:
    return InvalidInput("file", message)


def file_format(filename: str) -> str:
    suffix = Path(filename or "").suffix.lower()
    if suffix not in FORMATS:
        allowed = ", ".join(sorted(FORMATS))
        raise _refuse(
            f"{filename or 'The file'}: Ledger reads PDF, HTML, Markdown and plain text "
            f"documents ({allowed})."
        )
    return FORMATS[suffix]


def extract(filename: str, data: bytes, *, progress: Progress | None = None) -> Extracted:
    fmt = file_format(filename)
    if not data or not data.strip():
        raise _refuse(f"{filename}: the file is empty.")
    if fmt == "pdf":
        found = _pdf(filename, data, progress)
    else:
        text = _decode(data)
        if fmt == "html":
            found = _html(text)
        elif fmt == "markdown":
            found = Extracted("markdown", [_page(1, text, _markdown_headings(text))])
        else:
            parts = text.split("\f")
            found = Extracted("text", [_page(i + 1, p) for i, p in enumerate(parts)])
    if not any(p.text.strip() for p in found.pages):
        raise _refuse(f"{filename}: there is no text in it to read.")
    return found


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _page(number: int, text: str, headings: tuple[tuple[int, str], ...] = ()) -> Page:
    return Page(number, text.replace("\r\n", "\n").replace("\r", "\n"), headings)


# --- PDF -------------------------------------------------------------------------------------

HEADING_SCALE = 1.15  # a PDF line this much larger than the body text is a heading
MAX_HEADING = 120


def _pdf(filename: str, data: bytes, progress: Progress | None) -> Extracted:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise _refuse(f"{filename}: the PDF is encrypted; upload an unprotected copy.")
        total = len(reader.pages)
    except FileNotDecryptedError:
        raise _refuse(f"{filename}: the PDF is encrypted; upload an unprotected copy.") from None
    except (PdfReadError, PdfStreamError, ValueError, KeyError, OSError) as exc:
        raise _refuse(f"{filename}: the PDF is damaged and cannot be read ({exc}).") from None
    pages: list[Page] = []
    empty = 0
    for index, page in enumerate(reader.pages):
        try:
            text, headings = _pdf_page(page)
        except Exception:  # a damaged page; the others are still read
            text, headings = "", ()
        if not text.strip():
            empty += 1
        pages.append(_page(index + 1, text, headings))
        if progress is not None:
            progress(index + 1, total)
    notes = []
    if empty == total:
        raise _refuse(
            f"{filename}: none of its {total:,} pages has a text layer (a scan?); Ledger does "
            "not read text from images. Upload a PDF with text, or its text."
        )
    if empty:
        notes.append(f"{empty:,} of {total:,} pages have no text layer and were skipped.")
    title = None
    try:
        title = str(reader.metadata.title) if reader.metadata and reader.metadata.title else None
    except Exception:
        title = None
    return Extracted("pdf", pages, notes, title)


def _pdf_page(page: PageObject) -> tuple[str, tuple[tuple[int, str], ...]]:
    """A page's text, and its headings: lines set larger than the page's body text."""
    runs: list[tuple[float, str]] = []

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        if text.strip():
            runs.append((round(size * abs(tm[3] or 1) * abs(cm[3] or 1), 1), text.strip()))

    text = page.extract_text(visitor_text=visit) or ""
    if not runs:
        return text, ()
    weight: dict[float, int] = {}
    for size, run in runs:
        weight[size] = weight.get(size, 0) + len(run)
    body = max(weight, key=lambda s: weight[s])
    found: list[tuple[int, str]] = []
    for size, run in runs:
        title = " ".join(run.split())
        if size >= body * HEADING_SCALE and 2 < len(title) <= MAX_HEADING and not title.isdigit():
            at = text.find(run)
            if at != -1:
                found.append((at, title))
    return text, tuple(sorted(found))


# --- HTML and Markdown ---------------------------------------------------------------------


class _Text(HTMLParser):
    """Text of an HTML page, headings marked; scripts, styles and templates dropped."""

    SKIP: ClassVar[frozenset[str]] = frozenset(
        ["script", "style", "template", "noscript", "iframe", "object", "svg", "head"]
    )
    HEADINGS: ClassVar[frozenset[str]] = frozenset(["h1", "h2", "h3", "h4", "h5", "h6"])
    BLOCK: ClassVar[frozenset[str]] = HEADINGS | frozenset(
        ["p", "div", "li", "tr", "br", "section", "article", "table"]
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.headings: list[tuple[int, str]] = []
        self._skip = 0
        self._heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")
        if tag in self.HEADINGS and not self._skip:
            self._heading = []
        if tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self.HEADINGS and self._heading is not None:
            title = " ".join("".join(self._heading).split())
            if title:
                self.headings.append(
                    (len("".join(self.parts)) - len("".join(self._heading)), title)
                )
            self._heading = None
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.parts.append(data)
        if self._heading is not None:
            self._heading.append(data)


def _html(text: str) -> Extracted:
    parser = _Text()
    parser.feed(text)
    parser.close()
    body = re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts))
    notes = []
    if re.search(r"<script\b", text, re.IGNORECASE):
        notes.append("Scripts in the page were dropped; only its text is kept.")
    title_match = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    title = html.unescape(" ".join(title_match.group(1).split())) if title_match else None
    headings = tuple((max(0, body.find(h)), h) for _, h in parser.headings if h in body)
    return Extracted("html", [_page(1, body, headings)], notes, title)


def _markdown_headings(text: str) -> tuple[tuple[int, str], ...]:
    found = []
    offset = 0
    for line in text.split("\n"):
        match = re.match(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", line)
        if match:
            found.append((offset, match.group(1)))
        offset += len(line) + 1
    return tuple(found)


def heading_at(page: Page, offset: int) -> str | None:
    """The last heading at or before ``offset`` on the page."""
    current = None
    for at, title in page.headings:
        if at > offset:
            break
        current = title
    return current


def iter_pages(extracted: Extracted) -> Iterator[Page]:
    yield from extracted.pages
