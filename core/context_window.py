"""The context window: which messages of a conversation are sent with a new prompt.

The system prompt always comes first and the prompt itself is always kept; older messages
are added newest first while they fit the budget (``fit_context``), read from Redis a window
at a time only as far back as the budget reaches (``recent_history``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from core import history
from core.llm import ChatMessage

HISTORY_WINDOW = 32  # messages read from Redis at a time while filling the context budget
MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators around each message
MIN_REPLY_TOKENS = 64  # a prompt that leaves less room than this for the reply is refused


def fit_context(
    system: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    budget: int,
    count: Callable[[str], int],
) -> tuple[list[ChatMessage], int]:
    """The messages to send within ``budget`` tokens, and the tokens they use.

    The rule: the system prompt always comes first and the newest message (the prompt) is
    always kept, even over budget (the caller refuses a prompt that cannot fit at all). Older
    messages are added newest first while they fit; the first one that does not fit ends the
    history (no gaps). The kept history never starts with an assistant reply (its question
    was cut). Messages without content (a reply that failed before any text) are skipped.
    """

    def cost(text: str) -> int:
        return count(text) + MESSAGE_OVERHEAD_TOKENS

    usable = [m for m in messages if m.get("content")]
    used = cost(system)
    kept: list[ChatMessage] = []
    for position, message in enumerate(reversed(usable)):
        tokens = cost(str(message["content"]))
        if position > 0 and used + tokens > budget:
            break
        used += tokens
        kept.append({"role": str(message["role"]), "content": str(message["content"])})
    kept.reverse()
    while len(kept) > 1 and kept[0]["role"] == "assistant":
        used -= cost(kept.pop(0)["content"])
    return [{"role": "system", "content": system}, *kept], used


def recent_history(
    r: redis.Redis,
    *,
    session_id: uuid.UUID,
    newest: list[history.Message],
    end: int,
    budget: int,
    count: Callable[[str], int],
) -> list[history.Message]:
    """``newest`` plus older messages, read a window at a time until the budget is covered.

    ``end`` is the position in the history just after ``newest``: positions from the start
    stay true while replies are appended behind it (a comparison's other reply, say).
    """
    loaded = list(newest)
    tokens = sum(count(m.get("content", "")) for m in loaded)
    first = max(0, end - len(loaded))
    while first > 0 and tokens <= budget:
        start = max(0, first - HISTORY_WINDOW)
        window = history.read_range(r, session_id=session_id, start=start, stop=first - 1)
        if not window:
            break
        loaded[:0] = window
        first = start
        tokens += sum(count(m.get("content", "")) for m in window)
    return loaded
