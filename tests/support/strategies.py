"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from hypothesis import strategies as st

# Characters that break naive code: NUL, lone surrogates (possible from a notebook, never from
# a browser), bidi override, zero-width joiners, line breaks, quotes, SQL and LIKE fragments,
# combining marks, BOM, non-breaking and line separators, emoji, CJK.
TRICKY = [
    "\x00", "\ud800", "\udfff", "\u202e", "\u200d", "\u200c", "\n", "\r", "\t", "'", '"', "\\",
    "%", "_", "--", ";", "🧾", "李", "\u0301", "\ufeff", " ", "\u00a0", "\u2028", "\x1b[31m",
]  # fmt: skip

# Any text, with the tricky characters drawn often (a uniform draw over all code points almost
# never picks a surrogate).
any_text = st.lists(
    st.characters(codec=None, categories=None) | st.sampled_from(TRICKY), max_size=200
).map("".join)

# 10 kB and more, built from any text (Hypothesis draws at most a few kB at once).
ten_kilobytes = any_text.map(lambda t: (t + "¶") * (10_000 // (len(t) + 1) + 1))
