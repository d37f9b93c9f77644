"""Pure text helpers for search and export: literal case-insensitive matching, snippets with
match positions, Markdown escaping, safe file names. No I/O."""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_QUERY_CHARS = 1000
SNIPPET_RADIUS = 80

Span = tuple[int, int]


@dataclass(frozen=True)
class Matcher:
    """A literal, case-insensitive search: every character means itself (``.*[](%_\\`` too),
    case is compared with ``str.casefold`` (so ``ß`` finds ``SS``), and a run of spaces in
    the query matches any run of whitespace, a line break included."""

    query: str
    pattern: re.Pattern[str]  # runs on casefolded text
    needle: str | None  # casefolded word that must appear verbatim in the message's raw JSON

    def spans(self, content: str) -> list[Span]:
        """Where the query occurs in ``content`` (positions in the original string)."""
        folded = content.casefold()
        found = [(m.start(), m.end()) for m in self.pattern.finditer(folded) if m.end() > m.start()]
        if not found or len(folded) == len(content):
            return found  # casefold never shrinks a character: equal length = same positions
        origin: list[int] = []
        for i, ch in enumerate(content):
            origin.extend([i] * len(ch.casefold()))
        return [(origin[a], origin[b - 1] + 1) for a, b in found]

    def found_in(self, content: str) -> bool:
        return self.pattern.search(content.casefold()) is not None

    def candidates(self, raw: Sequence[str]) -> Sequence[int]:
        """Indexes of the encoded messages (JSON, as core.history stores them) that may
        contain the query; every message that does is among them.

        The test runs on the raw JSON, before anything is decoded: the needle (one word of
        the query) appears verbatim in a message's JSON whenever the query is in its content.
        An ASCII needle is looked up in the UTF-8 bytes lowered in C, one pass for the whole
        history; only histories holding one of the few characters whose casefold is ASCII
        (``ß``, ``ﬁ``, the Kelvin sign...) are casefolded in Python instead.
        """
        needle = self.needle
        if needle is None or not raw:
            return range(len(raw))
        joined = "\n".join(raw)  # JSON never holds a raw line break: one message per line
        data = joined.encode("utf-8", "surrogatepass")
        if needle.isascii() and (joined.isascii() or not _holds_ascii_folding(data)):
            lowered = data.lower()
            if b"\\u" in lowered:  # something was \u-escaped: its text is not verbatim
                return range(len(raw))
            return _lines_holding(lowered, needle.encode("ascii"))
        return [
            i
            for i, message in enumerate(raw)
            if needle in (folded := message.casefold()) or "\\u" in folded
        ]


def _lines_holding(data: bytes, needle: bytes) -> list[int]:
    """Which newline-separated lines of ``data`` contain ``needle``."""
    picked: list[int] = []
    line = 0
    line_start = 0
    pos = data.find(needle)
    while pos >= 0:
        line += data.count(b"\n", line_start, pos)
        picked.append(line)
        next_line = data.find(b"\n", pos)
        if next_line < 0:
            break
        line += 1
        line_start = next_line + 1
        pos = data.find(needle, line_start)
    return picked


# Characters outside ASCII whose casefold contains ASCII letters (Unicode 14: 19 of them;
# tests/unit/test_text.py recomputes the list). A history without any of them can be
# lowered bytewise for an ASCII needle and give the same answer as casefold.
FOLDS_TO_ASCII = (
    "\u00df\u0130\u0149\u017f\u01f0\u1e96\u1e97\u1e98\u1e99\u1e9a\u1e9e\u212a"
    "\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06"
)
_FOLDS_TO_ASCII_UTF8 = tuple(ch.encode() for ch in FOLDS_TO_ASCII)
_ASCII_BYTES = bytes(range(128))


def _holds_ascii_folding(data: bytes) -> bool:
    # Drop the ASCII bytes first (one C pass): what is left is usually a few hundred bytes.
    # A UTF-8 lead byte is always followed by its own continuation bytes, so no sequence can
    # be formed across two characters.
    rest = data.translate(None, _ASCII_BYTES)
    return any(seq in rest for seq in _FOLDS_TO_ASCII_UTF8)


# JSON escapes these (and control characters); anything else is stored verbatim by
# core.history, which encodes with ensure_ascii=False. A "\\u" escape in a raw message means
# some text was escaped after all, and that message is decoded instead of skipped.
_JSON_ESCAPED = frozenset('"\\')


def matcher(query: str) -> Matcher:
    """The search for ``query`` (see ``Matcher``)."""
    words = [w.casefold() for w in query.split()]
    pattern = re.compile(r"\s+".join(re.escape(w) for w in words))
    usable = [
        w for w in words if w and all(ch.isprintable() and ch not in _JSON_ESCAPED for ch in w)
    ]
    needle = max(usable, key=len) if usable else None
    return Matcher(query, pattern, needle)


@dataclass(frozen=True)
class Snippet:
    """A one-line excerpt and where the matches are in it (``text[start:end]``)."""

    text: str
    spans: tuple[Span, ...]

    def markdown(self, *, open_mark: str = "**", close_mark: str = "**") -> str:
        return highlight_markdown(self.text, self.spans, open_mark=open_mark, close_mark=close_mark)


def _flatten(text: str) -> tuple[str, list[int]]:
    """Whitespace and control characters become single spaces; ``index[i]`` is where the
    original position ``i`` lands in the flat text (``len(text)`` maps to the end)."""
    out: list[str] = []
    index: list[int] = []
    in_space = False
    for ch in text:
        index.append(len(out))
        if ch.isspace() or not ch.isprintable():
            if not in_space:
                out.append(" ")
            in_space = True
        else:
            out.append(ch)
            in_space = False
    index.append(len(out))
    return "".join(out), index


def snippet(text: str, spans: list[Span], *, radius: int = SNIPPET_RADIUS) -> Snippet | None:
    """The excerpt around the first span (``radius`` characters each side, cut at a word
    boundary when one is near), with every span inside it; None when there is no span."""
    if not spans:
        return None
    first_start, first_end = spans[0]
    start = max(0, first_start - radius)
    end = min(len(text), first_end + radius)
    if start > 0:  # begin at a word when one starts shortly after the cut
        space = text.find(" ", start, first_start)
        if 0 <= space - start < 20:
            start = space + 1
    if end < len(text):
        space = text.rfind(" ", first_end, end)
        if space >= 0 and end - space < 20:
            end = space
    window = text[start:end]
    inside = [(a - start, b - start) for a, b in spans if a >= start and b <= end]
    flat, index = _flatten(window)
    lead = len(flat) - len(flat.lstrip())
    flat = flat.strip()
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(text) else ""
    shift = len(prefix) - lead
    limit = len(prefix) + len(flat)
    moved = ((max(0, index[a] + shift), min(limit, index[b] + shift)) for a, b in inside)
    return Snippet(prefix + flat + suffix, tuple((a, b) for a, b in moved if b > a))


_MD_SPECIAL = frozenset(string.punctuation)


def escape_markdown(text: str) -> str:
    """Text that Markdown (and Streamlit's extensions: ``:color[..]``, ``:emoji:``, ``$math$``)
    shows literally: every ASCII punctuation character is backslash-escaped, which CommonMark
    allows for all of them, so no HTML, link, emphasis or directive can form."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


_INLINE_SPECIAL = frozenset("\\`*_[]<|~")
_LINE_START = re.compile(r"(?m)^([ \t]*)([#>+=-])")
_ORDERED = re.compile(r"(?m)^([ \t]*\d+)([.)])")
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")


def escape_markdown_light(text: str) -> str:
    """Text for a Markdown document read outside the app (an export): shown literally by any
    CommonMark viewer, yet readable as plain text. Only what can start a construct is
    escaped: emphasis, code, links and images, tables, strikethrough, HTML (``<`` only:
    ``\\<b>`` is never a tag), entities, and headings, quotes and list markers at a line's
    start. ``ana.analyst`` stays as it is; ``escape_markdown`` (every punctuation mark) is
    for Streamlit, whose extensions make ``:`` and ``$`` special too."""
    out = "".join("\\" + ch if ch in _INLINE_SPECIAL else ch for ch in text)
    out = _ENTITY.sub("\\&", out)
    out = _LINE_START.sub(r"\1\\\2", out)
    return _ORDERED.sub(r"\1\\\2", out)


def code_span(text: str) -> str:
    """``text`` as a Markdown code span, shown verbatim whatever backticks it holds."""
    flat = " ".join(text.split())
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def highlight_markdown(
    text: str, spans: tuple[Span, ...], *, open_mark: str = "**", close_mark: str = "**"
) -> str:
    """Escaped Markdown with each span wrapped in ``open_mark``/``close_mark``."""
    parts: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        if start < pos:
            continue
        parts.append(escape_markdown(text[pos:start]))
        parts.append(open_mark + escape_markdown(text[start:end]) + close_mark)
        pos = end
    parts.append(escape_markdown(text[pos:]))
    return "".join(parts)


def safe_filename(title: str, *, suffix: str, ext: str, max_stem: int = 60) -> str:
    """An ASCII file name from a title: letters, digits and hyphens only, so no path, no
    hidden file and no reserved name can come out of it (``ledger-<slug>-<suffix>.<ext>``)."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:max_stem].strip("-")
    clean_suffix = re.sub(r"[^a-z0-9]+", "", suffix.lower())[:12]
    clean_ext = re.sub(r"[^a-z0-9]+", "", ext.lower())[:8] or "txt"
    stem = "-".join(p for p in ("ledger", slug or "session", clean_suffix) if p)
    return f"{stem}.{clean_ext}"


def ago(when: datetime, *, now: datetime) -> str:
    """A short relative time for lists: "just now", "5 min ago", "3 h ago", "2 d ago", or the
    date when older than a week."""
    seconds = (now - when).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86_400:
        return f"{int(seconds // 3600)} h ago"
    if seconds < 7 * 86_400:
        return f"{int(seconds // 86_400)} d ago"
    return when.astimezone(UTC).strftime("%Y-%m-%d")


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with its noun, singular for one: "1 error", "0 errors", "1,204 errors"."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
