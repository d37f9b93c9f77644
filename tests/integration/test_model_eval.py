"""benchmarks/model_eval.py scores what a model answers: run against a server speaking
Ollama's protocol whose every reply is one textbook definition of EBITDA."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from core import persona
from tests.support.fake_ollama import FakeOllama
from tests.support.finance_eval import QUESTIONS

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "model_eval.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("model_eval", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["model_eval"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_each_question_is_asked_with_the_persona_and_only_right_answers_score(
    ollama_env: FakeOllama,
) -> None:
    ollama_env.script(
        reply=["EBITDA is earnings before interest, ", "taxes, depreciation and amortization."]
    )
    result = load().run_one("ollama:llama3.2:3b", max_tokens=64, threads=1)
    answers = result["answers"]
    assert [a["id"] for a in answers] == [q.id for q in QUESTIONS]
    assert [a["id"] for a in answers if a["passed"]] == ["ebitda"]
    assert all(a["ttft_ms"] is not None and a["tokens"] > 0 for a in answers)
    sent = ollama_env.requests[-len(QUESTIONS) :]
    assert all(r["messages"][0]["content"] == persona.system_prompt() for r in sent)
    assert all(r["options"]["temperature"] == 0.0 and r["model"] == "llama3.2:3b" for r in sent)
    assert [r["messages"][1]["content"] for r in sent] == [q.prompt for q in QUESTIONS]
