"""Pure rules of a chat turn: prompt cleaning, the context budget, the persona, captions."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from core import chat, chat_display, context_window, persona
from core.config import get_settings
from core.errors import ConfigError, EmptyPrompt, InvalidInput


def words(text: str) -> int:
    """A tokenizer for tests: one token a word."""
    return len(text.split())


def msg(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "content": content, "ts": "2025-01-01T00:00:00+00:00"}


def cost(text: str) -> int:
    return words(text) + context_window.MESSAGE_OVERHEAD_TOKENS


# --- prompt ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t \r\n", "\x00\x07 \x1b"])
def test_empty_or_blank_prompt_is_empty(prompt: str) -> None:
    with pytest.raises(EmptyPrompt):
        chat.clean_prompt(prompt, max_chars=100)


def test_prompt_over_the_limit_is_refused_with_the_limit() -> None:
    with pytest.raises(InvalidInput) as caught:
        chat.clean_prompt("x" * 16_001, max_chars=16_000)
    assert "16,001 characters" in str(caught.value)
    assert "limit is 16,000 characters" in str(caught.value)
    assert caught.value.field == "prompt"


def test_prompt_at_the_limit_is_accepted() -> None:
    assert len(chat.clean_prompt("x" * 16_000, max_chars=16_000)) == 16_000


def test_control_characters_are_removed_but_tabs_and_newlines_kept() -> None:
    cleaned = chat.clean_prompt("EBITDA\x00 vs\x1b[31m EBIT\r\n\tmargin\x7f\x85", max_chars=100)
    assert cleaned == "EBITDA vs[31m EBIT\n\tmargin"


def test_any_unicode_is_kept_exactly() -> None:
    text = "Zoë «Ω» 李 — 💶→💵 👩‍💼 مرحبا \u200f ¥1,000 ≈ €6.4"
    assert chat.clean_prompt(text, max_chars=100) == text


def test_lone_surrogates_become_replacement_characters() -> None:
    assert chat.clean_prompt("a\ud800b", max_chars=10) == "a\ufffdb"


def test_decomposed_accents_are_normalised() -> None:
    assert chat.clean_prompt("Zoe\u0301", max_chars=10) == "Zoé"


# --- context budget -------------------------------------------------------------------------


def test_everything_is_kept_when_it_fits() -> None:
    history = [msg("user", "a b"), msg("assistant", "c d e"), msg("user", "f")]
    messages, used = context_window.fit_context("sys", history, budget=1000, count=words)
    assert [m["content"] for m in messages] == ["sys", "a b", "c d e", "f"]
    assert messages[0]["role"] == "system"
    assert used == cost("sys") + cost("a b") + cost("c d e") + cost("f")


def test_oldest_turns_are_dropped_first() -> None:
    history = [
        msg("user", "q1 q1 q1"),
        msg("assistant", "a1"),
        msg("user", "q2"),
        msg("assistant", "a2"),
        msg("user", "q3"),
    ]
    budget = cost("sys") + cost("q2") + cost("a2") + cost("q3") + 2
    messages, used = context_window.fit_context("sys", history, budget=budget, count=words)
    assert [m["content"] for m in messages] == ["sys", "q2", "a2", "q3"]
    assert used == budget - 2


def test_kept_history_never_starts_with_an_orphan_reply() -> None:
    history = [msg("user", "one two three"), msg("assistant", "four"), msg("user", "five")]
    budget = cost("sys") + cost("four") + cost("five")  # room for the reply, not its question
    messages, used = context_window.fit_context("sys", history, budget=budget, count=words)
    assert [m["content"] for m in messages] == ["sys", "five"]
    assert used == cost("sys") + cost("five")


def test_history_is_cut_at_the_first_message_that_does_not_fit() -> None:
    history = [
        msg("user", "q1"),
        msg("assistant", "a1"),
        msg("user", "q2 " * 50),
        msg("assistant", "a2"),
        msg("user", "q3"),
    ]
    budget = cost("sys") + cost("q3") + cost("a2") + cost("q1") + cost("a1") + 5
    messages, _ = context_window.fit_context("sys", history, budget=budget, count=words)
    # q2 does not fit; older q1/a1 would, but a gap would garble the conversation.
    assert [m["content"] for m in messages] == ["sys", "q3"]


def test_system_prompt_and_newest_prompt_are_kept_even_over_budget() -> None:
    history = [msg("user", "old"), msg("user", "a very long prompt " * 20)]
    messages, used = context_window.fit_context("sys words here", history, budget=3, count=words)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"].startswith("a very long prompt")
    assert used > 3


def test_replies_without_content_are_skipped() -> None:
    history = [msg("user", "q1"), msg("assistant", ""), msg("user", "q2")]
    messages, _ = context_window.fit_context("sys", history, budget=1000, count=words)
    assert [m["content"] for m in messages] == ["sys", "q1", "q2"]


# --- persona --------------------------------------------------------------------------------


def test_default_persona_states_scope_advice_and_units() -> None:
    text = persona.system_prompt(get_settings())
    for phrase in ("markets", "accounting", "corporate finance", "personal finance"):
        assert phrase in text
    assert "not investment" in text
    assert "unit" in text and "date" in text
    assert "Today's date:" in text


def test_system_prompt_path_overrides_the_persona(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "persona.md"
    path.write_text("You are a bond desk assistant.", encoding="utf-8")
    monkeypatch.setenv("SYSTEM_PROMPT_PATH", str(path))
    get_settings.cache_clear()
    try:
        assert persona.system_prompt().startswith("You are a bond desk assistant.")
    finally:
        get_settings.cache_clear()


def test_missing_system_prompt_file_is_a_clear_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYSTEM_PROMPT_PATH", str(tmp_path / "gone.md"))
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"SYSTEM_PROMPT_PATH points to .*gone\.md"):
            persona.system_prompt()
    finally:
        get_settings.cache_clear()


# --- caption --------------------------------------------------------------------------------


def test_caption_shows_tokens_speed_and_first_token_time() -> None:
    stats = {"completion_tokens": 1280, "tokens_per_second": 42.07, "ttft_ms": 231.4}
    assert chat_display.caption(stats) == "1,280 tokens · 42.1 tokens/s · first token 231 ms"


def test_caption_marks_estimated_counts() -> None:
    assert chat_display.caption({"completion_tokens": 3, "estimated": True}).startswith("≈3 tokens")


def test_status_notes_mark_unfinished_replies() -> None:
    assert chat_display.status_note({"status": "interrupted"}) is not None
    note = chat_display.status_note({"status": "error", "error": "Ollama is not reachable"})
    assert note == "Reply failed: Ollama is not reachable"
    assert chat_display.status_note({"role": "assistant"}) is None


# --- screen updates -------------------------------------------------------------------------


def paced_at(arrivals: list[tuple[float, str]], interval: float = 0.04) -> list[tuple[float, str]]:
    """What ``chat_display.paced`` lets out, and when: ``arrivals`` are (time, chunk) as the model sends."""
    now = [0.0]

    def chunks() -> Any:
        for at, text in arrivals:
            now[0] = at
            yield text

    out = []
    for text in chat_display.paced(chunks(), interval, clock=lambda: now[0]):
        out.append((now[0], text))
    return out


def test_paced_shows_the_first_chunk_at_once_then_at_most_one_update_per_interval() -> None:
    arrivals = [(0.100 + 0.025 * i, f"w{i} ") for i in range(8)]  # 40 chunks a second
    out = paced_at(arrivals)
    assert out[0] == (0.100, "w0 ")
    assert [text for _, text in out] == ["w0 ", "w1 w2 ", "w3 w4 ", "w5 w6 ", "w7 "]
    times = [at for at, _ in out[:-1]]  # the last one: the remainder when the stream ends
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(times))


def test_paced_passes_slow_chunks_through_one_by_one() -> None:
    arrivals = [(0.05 * i, f"w{i}") for i in range(5)]
    assert [text for _, text in paced_at(arrivals)] == ["w0", "w1", "w2", "w3", "w4"]


def test_paced_never_drops_reorders_or_delays_the_end() -> None:
    arrivals = [(0.0, "a"), (0.001, "b"), (0.002, "c"), (0.003, "d")]
    out = paced_at(arrivals)
    assert [text for _, text in out] == ["a", "bcd"]
    assert out[-1][0] == 0.003  # out as soon as the stream ended, not an interval later


def test_paced_shows_what_it_held_before_the_stream_fails() -> None:
    now = [0.0]

    def chunks() -> Any:
        for at, text in [(0.0, "Net "), (0.01, "debt "), (0.02, "is")]:
            now[0] = at
            yield text
        now[0] = 1.5
        raise TimeoutError("the server sent nothing for 1.5 s")

    shown: list[str] = []
    with pytest.raises(TimeoutError):
        for text in chat_display.paced(chunks(), 0.04, clock=lambda: now[0]):
            shown.append(text)
    assert shown == ["Net ", "debt is"]
