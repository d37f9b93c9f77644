"""Search matching, snippets, Markdown escaping and file names (pure functions)."""

from __future__ import annotations

import json
import re
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core import text

ALPHABET = st.sampled_from(
    list("abcABC xyz.*+?()[]{}|^$\\%_'\"\n\t€—é")
    + list(text.FOLDS_TO_ASCII)
    + ["\x00", "\x1b", "İ", "ß", "S", "K", "k"]
)
CONTENT = st.text(ALPHABET, max_size=40)


def encode(content: str) -> str:
    """As core.history stores a message."""
    return json.dumps(
        {"role": "user", "content": content, "ts": "2026-01-01T00:00:00+00:00"},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def test_the_characters_folding_to_ascii_are_listed_completely() -> None:
    computed = {
        c for c in map(chr, range(0x80, 0x110000)) if any(ord(x) < 128 for x in c.casefold())
    }
    assert computed == set(text.FOLDS_TO_ASCII)


@settings(max_examples=400, deadline=None)
@given(contents=st.lists(CONTENT, min_size=1, max_size=6), pick=st.data())
@example(contents=["Straße"], pick=None)
@example(contents=["\u212aelvin"], pick=None)
def test_candidates_never_miss_a_message_that_matches(
    contents: list[str], pick: st.DataObject | None
) -> None:
    if pick is None:
        query = {"Straße": "STRASSE", "\u212aelvin": "kelvin"}[contents[0]]
    else:
        source = pick.draw(st.sampled_from(contents))
        start = pick.draw(st.integers(0, len(source)))
        query = source[start : start + pick.draw(st.integers(1, 12))]
        query = "".join(ch.upper() if pick.draw(st.booleans()) else ch for ch in query)
    if not query.strip():
        return
    match = text.matcher(query)
    raw = [encode(c) for c in contents]
    candidates = set(match.candidates(raw))
    for i, content in enumerate(contents):
        if match.found_in(content):
            assert i in candidates, (query, content)


@given(content=CONTENT, query=st.text(ALPHABET, min_size=1, max_size=5))
def test_spans_point_at_the_matched_text_in_the_original(content: str, query: str) -> None:
    if not query.strip():
        return
    match = text.matcher(query)
    for start, end in match.spans(content):
        assert 0 <= start < end <= len(content)
        # A character can casefold to several ("ﬃ" -> "ffi"): the span covers whole original
        # characters, so their folded text contains the match rather than equals it.
        assert match.pattern.search(content[start:end].casefold())


def test_metacharacters_are_literal() -> None:
    match = text.matcher("(1 + g)%_.*")
    assert match.found_in("value = FCF × (1 + G)%_.* here")
    assert not match.found_in("value (1 + gg)%_x")
    assert text.matcher("a.c").found_in("A.C") and not text.matcher("a.c").found_in("abc")
    assert not text.matcher("%").found_in("no percent sign")


def test_spaces_in_the_query_match_any_whitespace() -> None:
    assert text.matcher("net   income").spans("Net\n\tIncome rose") == [(0, 11)]


def test_casefold_matches_sharp_s_and_positions_stay_in_the_original() -> None:
    match = text.matcher("strasse")
    assert match.spans("Die Straße ist lang") == [(4, 10)]


def test_snippet_centres_on_the_first_match_and_keeps_every_match_inside() -> None:
    content = "x" * 300 + " The NET\n\nincome rose. net income fell " + "y " * 100
    match = text.matcher("net income")
    snip = text.snippet(content, match.spans(content))
    assert snip is not None
    assert snip.text.startswith("…") and snip.text.endswith("…")
    assert "\n" not in snip.text
    assert [snip.text[a:b] for a, b in snip.spans] == ["NET income", "net income"]
    assert len(snip.text) < 2 * text.SNIPPET_RADIUS + 40


def test_snippet_of_a_short_message_is_the_whole_message() -> None:
    snip = text.snippet("EBITDA up", text.matcher("ebitda").spans("EBITDA up"))
    assert snip == text.Snippet("EBITDA up", ((0, 6),))


def test_markdown_escaping_leaves_no_markup() -> None:
    hostile = "<script>alert(1)</script> :red[x] $x$ *a* [l](http://x) ` # |"
    escaped = text.escape_markdown(hostile)
    punct = re.escape(string.punctuation)
    assert re.fullmatch(rf"(\\[{punct}]|[^{punct}])*", escaped)
    assert "<script>" not in escaped


def test_highlight_wraps_only_the_spans() -> None:
    md = text.highlight_markdown("a*b <c>", ((2, 3),), open_mark=":orange[", close_mark="]")
    assert md == "a\\*:orange[b] \\<c\\>"


@given(st.text(max_size=300))
@example("../../etc/passwd")
@example("..")
@example("CON")
@example("")
def test_export_file_names_are_safe(title: str) -> None:
    name = text.safe_filename(title, suffix="1a2b3c4d", ext="md")
    assert re.fullmatch(r"ledger-[a-z0-9-]+\.md", name)
    assert "/" not in name and ".." not in name and len(name) < 100


@pytest.mark.parametrize(
    ("raw", "span"),
    [("llama3.2:3b", "`llama3.2:3b`"), ("a`b", "``a`b``"), ("`x`", "`` `x` ``"), ("a\nb", "`a b`")],
)
def test_code_spans_survive_backticks(raw: str, span: str) -> None:
    assert text.code_span(raw) == span


@pytest.mark.parametrize(
    ("n", "said"), [(0, "0 errors"), (1, "1 error"), (2, "2 errors"), (1204, "1,204 errors")]
)
def test_a_count_takes_the_singular_only_for_one(n: int, said: str) -> None:
    assert text.counted(n, "error") == said


def test_a_count_can_take_an_irregular_plural() -> None:
    assert text.counted(3, "analysis", "analyses") == "3 analyses"
