"""A reply caught in a loop: small models sometimes repeat one phrase until the length limit
("0.04% 0.04% 0.04% ..."). Detected in code while the reply streams, so the turn stops early
and is marked truncated instead of burning its whole token budget.

The test: the end of the reply is periodic. For a unit of ``p`` characters (1 to MAX_UNIT),
the last ``max(MIN_SPAN, REPEATS * p)`` characters equal themselves shifted by ``p``: the
same unit at least REPEATS times in a row, over at least MIN_SPAN characters. A real answer
does not repeat one stretch of text exactly four times over 400 characters (a table's rows
differ in their figures; a separator line is shorter). The cost is a few slice comparisons
in C per check, and the turn checks every CHECK_EVERY chunks.
"""

from __future__ import annotations

MAX_UNIT = 200  # characters: a repeated sentence, not only a repeated word
REPEATS = 4
MIN_SPAN = 400  # characters of repetition before a loop is called one
CHECK_EVERY = 16  # chunks between checks while streaming


def loop_unit(text: str) -> str | None:
    """The unit the end of ``text`` keeps repeating, or None when it does not loop."""
    for period in range(1, MAX_UNIT + 1):
        span = max(MIN_SPAN, REPEATS * period)
        if len(text) < span:
            return None
        tail = text[-span:]
        if tail[period:] == tail[:-period] and tail.strip():
            return tail[-period:]
    return None


def describe(unit: str) -> str:
    """The sentence a user sees for a stopped loop."""
    shown = " ".join(unit.split())
    if len(shown) > 40:
        shown = shown[:39] + "…"
    return (
        "Stopped early: the model kept repeating itself "
        f"(“{shown}” over and over). Ask again, or rephrase the question."
    )
