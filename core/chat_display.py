"""How a reply is shown: the stats caption, the mark on an incomplete reply, Markdown-safe
text, and a stream paced to the screen. Used by the chat page and the terminal client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from core.tools import ToolCard
from core.turn_saving import TurnStats

Event = str | ToolCard

# A reply on screen is redrawn whole at each update: at most one update this often (25 a
# second still reads as a smooth stream), however fast the model's tokens come.
SCREEN_UPDATE_SECONDS = 0.04


def caption(stats: Mapping[str, Any] | TurnStats | None) -> str:
    """``128 tokens · 42.1 tokens/s · first token 230 ms · llama3.2:3b``."""
    if stats is None:
        return ""
    s = stats.as_dict() if isinstance(stats, TurnStats) else dict(stats)
    approx = "≈" if s.get("estimated") else ""
    parts = [f"{approx}{int(s.get('completion_tokens') or 0):,} tokens"]
    if s.get("tokens_per_second"):
        parts.append(f"{float(s['tokens_per_second']):.1f} tokens/s")
    if s.get("ttft_ms") is not None:
        parts.append(f"first token {float(s['ttft_ms']):,.0f} ms")
    if s.get("model"):
        parts.append(str(s["model"]))
    return " · ".join(parts)


def status_note(message: Mapping[str, Any]) -> str | None:
    """A visible mark for a reply that did not complete (None for a complete one)."""
    status = message.get("status")
    if status == "interrupted":
        return str(message.get("error") or "") or (
            "Reply stopped before the end (Stop pressed or page left); the text above is partial."
        )
    if status == "truncated":
        return (
            str(message.get("error") or "") or "Reply cut off before the end: it is not complete."
        )
    if status == "error":
        return f"Reply failed: {message.get('error') or 'unknown error'}"
    return None


def for_display(text: str) -> str:
    """Chat text for Streamlit's Markdown: ``$`` escaped, so "USD 5 and $6" is not read as
    LaTeX, and Markdown image syntax shown as text. An image in a message or reply would be
    fetched by the browser of everyone who opens the conversation, administrators included:
    a tracking pixel, or a channel a prompt-injected reply could leak data through. The app's
    own pictures (charts) are Streamlit elements, never Markdown images."""
    return text.replace("$", "\\$").replace("![", "!\\[")


def display_stream(events: Iterable[Event]) -> Iterator[Event]:
    """``for_display`` over a streamed reply, whose chunks may split ``![`` in two: a chunk's
    trailing ``!`` is held back until the next chunk shows whether an image begins. Tool cards
    pass through (after any held text)."""
    held = ""
    try:
        for event in events:
            if not isinstance(event, str):
                if held:
                    yield held
                    held = ""
                yield event
                continue
            text = held + event
            held = "!" if text.endswith("!") else ""
            text = text.removesuffix(held)
            if text:
                yield for_display(text)
    except Exception:
        if held:  # a reply that fails keeps every character it got on screen
            yield held
        raise
    if held:
        yield held


def paced(
    chunks: Iterable[Event],
    interval: float = SCREEN_UPDATE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Event]:
    """``chunks`` joined so that a screen showing them updates at most once per ``interval``.

    The first chunk comes out at once (time to first token is untouched); after that, a chunk
    arriving within ``interval`` of the last update is held and comes out with the next one
    that arrives later, and whatever is held comes out when ``chunks`` ends or fails (before
    the error), or before a tool card. Nothing is dropped or reordered. The cost: when the model
    stalls, the words of the last ``interval`` before the stall wait for it to end. For
    ``st.write_stream``, which re-sends the whole text so far at every chunk: a
    40-token-a-second model then costs 25 redraws a second, not 40, and a faster one no more.
    """
    held: list[str] = []
    last: float | None = None
    try:
        for event in chunks:
            if not isinstance(event, str):
                if held:
                    yield "".join(held)
                    held.clear()
                yield event
                last = None
                continue
            held.append(event)
            at = clock()
            if last is None or at - last >= interval:
                yield "".join(held)
                held.clear()
                last = at
    except Exception:
        if held:  # a reply that fails (server gone, timeout) keeps every word it got on screen
            yield "".join(held)
        raise
    if held:
        yield "".join(held)


def segments(content: str, cards: list[ToolCard]) -> list[Event]:
    """A saved reply as shown: its text cut where each tool card stood, cards in between."""
    parts: list[Event] = []
    start = 0
    for card in sorted(cards, key=lambda c: c.at):
        at = min(max(card.at, start), len(content))
        if content[start:at]:
            parts.append(content[start:at])
        parts.append(card)
        start = at
    if content[start:]:
        parts.append(content[start:])
    return parts
