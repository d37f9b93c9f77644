"""The LLM failures a chat turn must survive, as one list the page and CLI tests share.

Each case says how to bring the failure about (settings, or a script for the fake Ollama), the
words the user must be shown, and the partial reply that must be saved (marked ``error``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.fake_ollama import FakeOllama

PARTIAL = ["Partial", " answer", " lost", " here"]


@dataclass(frozen=True)
class LLMFailure:
    says: tuple[str, ...]  # parts of the error the user sees (and of the reply's stored error)
    partial: str  # the reply text saved before the failure
    settings: dict[str, str] = field(default_factory=dict)
    script: dict[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] | None = None  # what the server lists as pulled (None: as it is)

    def bring_about(self, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
        """Configure core (and any client process started after this) for the failure."""
        from core import llm
        from core.config import get_settings

        for name, value in self.settings.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        llm.reset()
        fake.script(**self.script)
        if self.models is not None:
            fake.models = self.models


LLM_FAILURES = [
    pytest.param(
        LLMFailure(
            ("Ollama is not reachable at http://127.0.0.1:9", "ollama serve"),
            "",
            settings={"OLLAMA_HOST": "http://127.0.0.1:9"},  # nothing listens there
        ),
        id="ollama-unreachable",
    ),
    pytest.param(
        LLMFailure(
            ('Model "mistral:7b" is not available', "ollama pull mistral:7b"),
            "",
            settings={"OLLAMA_MODEL": "mistral:7b"},
            # Nothing pulled at all (with another model pulled, that one would answer instead).
            models=(),
        ),
        id="model-not-pulled",
    ),
    pytest.param(
        LLMFailure(
            ("Ollama reported an error in the middle of the reply: out of memory",),
            "Partial answer",
            script={"reply": PARTIAL, "failure": "error", "after": 2, "error": "out of memory"},
        ),
        id="error-line-mid-stream",
    ),
    pytest.param(
        LLMFailure(
            ("The connection to Ollama", "was dropped before the reply was complete"),
            "Partial answer",
            script={"reply": PARTIAL, "failure": "drop", "after": 2},
        ),
        id="connection-dropped-mid-stream",
    ),
]


def says_all(text: str, failure: LLMFailure) -> bool:
    return all(part in text for part in failure.says)
