"""Versions of a reply: a reply regenerated, and two models answering one prompt side by side.

The history is append-only, so nothing is replaced: the replies that follow one question are
its versions. A regenerated reply is appended after the earlier ones with ``version`` n + 1;
two models answering one prompt are appended as versions 1 and 2, both marked ``compare``.
A lone reply has no ``version`` (it is version 1).

Three readers: the chat page and the export show a question's versions together
(``grouped``); the context sent with the next prompt carries one version per question
(``for_context``); regenerating answers the last question again (``last_question``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

M = TypeVar("M", bound=Mapping[str, Any])


def version_of(message: Mapping[str, Any]) -> int:
    value = message.get("version")
    return value if isinstance(value, int) and value > 0 else 1


def model_of(message: Mapping[str, Any]) -> str | None:
    stats = message.get("stats")
    model = stats.get("model") if isinstance(stats, Mapping) else None
    return str(model) if model else None


@dataclass(frozen=True)
class Replies:
    """Two or more replies to one question, oldest version first."""

    replies: Sequence[Mapping[str, Any]]

    @property
    def side_by_side(self) -> bool:
        """Every reply came from one comparison: shown in columns, not as versions."""
        return all(r.get("compare") for r in self.replies)

    @property
    def newest(self) -> Mapping[str, Any]:
        return self.replies[-1]


def _runs(messages: Sequence[M]) -> list[list[M]]:
    """The messages cut into runs: each user (or system) message alone, and each unbroken
    run of assistant messages together."""
    runs: list[list[M]] = []
    for message in messages:
        if message.get("role") == "assistant" and runs and runs[-1][0].get("role") == "assistant":
            runs[-1].append(message)
        else:
            runs.append([message])
    return runs


def _ordered(run: Sequence[M]) -> list[M]:
    """A run of replies by version; equal versions (two tabs regenerating at once) keep the
    order they were saved in."""
    return sorted(run, key=version_of)


def grouped(messages: Sequence[M]) -> list[M | Replies]:
    """The conversation as shown: each message, except that a question's several replies
    come as one ``Replies``."""
    shown: list[M | Replies] = []
    for run in _runs(messages):
        if len(run) > 1:
            ordered: Sequence[Mapping[str, Any]] = _ordered(run)
            shown.append(Replies(ordered))
        else:
            shown.append(run[0])
    return shown


def for_context(messages: Sequence[M], model: str | None = None) -> list[M]:
    """The messages to send as context: of a question's versions only one, the newest that
    ``model`` wrote (the model answering now keeps its own line of thought after a
    comparison), else the newest of all."""
    kept: list[M] = []
    for run in _runs(messages):
        if len(run) == 1 or run[0].get("role") != "assistant":
            kept.extend(run)
            continue
        ordered = _ordered(run)
        own = [r for r in ordered if model is not None and model_of(r) == model]
        kept.append((own or ordered)[-1])
    return kept


@dataclass(frozen=True)
class LastQuestion:
    """Where the newest question stands in a list of messages, and its replies so far."""

    index: int  # of the question in the list
    question: str
    replies: int  # how many replies follow it
    next_version: int


def last_question(messages: Sequence[Mapping[str, Any]]) -> LastQuestion | None:
    """The newest question if only replies follow it (None: no question yet)."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") == "user":
            after = messages[index + 1 :]
            highest = max((version_of(r) for r in after), default=0)
            return LastQuestion(index, str(message.get("content", "")), len(after), highest + 1)
        if message.get("role") != "assistant":
            return None
    return None


def label(message: Mapping[str, Any], total: int) -> str:
    """``Version 2 of 3 · llama3.2:3b`` (the model when known)."""
    model = model_of(message)
    return f"Version {version_of(message)} of {total}" + (f" · {model}" if model else "")


def marks(messages: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """For each message, how it stands among its question's replies (``version 2 of 3``;
    ``side by side, 1 of 2``), None for a question or a lone reply: for exports, which list
    messages in the order they were saved."""
    out: list[str | None] = []
    for run in _runs(messages):
        if len(run) == 1:
            out.append(None)
            continue
        together = Replies(list(run)).side_by_side
        for message in run:
            kind = "side by side" if together else "version"
            out.append(f"{kind} {version_of(message)} of {len(run)}")
    return out
