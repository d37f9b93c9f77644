"""Demo conversations are read by analysts: their figures must agree with each other."""

from __future__ import annotations

import random
import re

import pytest

from core import demo_conversations

SEEDS = range(300)


def money(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"\$([\d,]+\.\d)m", text)]


def pct(text: str) -> list[float]:
    return [float(x) / 100 for x in re.findall(r"([\d.]+)%", text)]


def first_turns(title_word: str) -> list[demo_conversations.Turn]:
    found = []
    for seed in SEEDS:
        convo = demo_conversations.conversation(random.Random(seed), turns=1)
        if title_word in convo.title:
            found.append(convo.turns[0])
    assert found, f"no {title_word!r} conversation in {len(SEEDS)} seeds"
    return found


def test_a_revenue_bridge_adds_up() -> None:
    for turn in first_turns("revenue bridge"):
        start, end = money(turn.question)
        volume, price = pct(turn.question)
        fx = pct(turn.answer)[2]
        assert end == pytest.approx(start * (1 + volume + price - fx), rel=0.003)
        assert volume > price > fx  # "volume explains most", "FX mostly offsets price"


def test_an_ebitda_margin_is_ebitda_over_revenue_and_below_the_quoted_median() -> None:
    for turn in first_turns("EBITDA margin"):
        ebitda, revenue = money(turn.question)
        (median,) = pct(turn.question)
        margin = pct(turn.answer)[0]
        assert margin == pytest.approx(ebitda / revenue, abs=0.0015)
        assert margin < median


def test_a_budget_variance_is_actual_minus_budget() -> None:
    for turn in first_turns("Budget variance"):
        actual, budget = money(turn.question)
        (variance,) = money(turn.answer)
        assert variance == pytest.approx(actual - budget, abs=0.11)
        assert pct(turn.answer)[0] == pytest.approx(variance / budget, abs=0.0015)


def test_covenant_headroom_follows_from_net_debt_and_ebitda() -> None:
    for turn in first_turns("Covenant headroom"):
        net_debt, ebitda = money(turn.question)
        (headroom,) = pct(turn.answer)
        assert headroom == pytest.approx(1 - net_debt / ebitda / 3.5, abs=0.002)


def test_demo_usage_of_the_embedded_model_is_recorded_under_its_real_name() -> None:
    from core import demo
    from core.llm import LlamaCppBackend, default_gguf_path

    real = LlamaCppBackend(model_path=default_gguf_path(), n_ctx=512, n_threads=1, max_wait=1)
    assert real.default_model in {m.name for m in demo.MODELS if m.backend == "llamacpp"}
