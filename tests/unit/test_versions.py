"""core.versions: a question's several replies, shown together and sent as one."""

from __future__ import annotations

from typing import Any

from core import versions


def q(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def a(text: str, model: str = "m1", version: int | None = None, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "stats": {"model": model}}
    if version:
        message["version"] = version
    message.update(extra)
    return message


def test_a_lone_reply_is_not_grouped() -> None:
    messages = [q("1"), a("one"), q("2"), a("two")]
    assert versions.grouped(messages) == messages
    assert versions.marks(messages) == [None, None, None, None]


def test_a_regenerated_reply_groups_with_the_earlier_one_oldest_version_first() -> None:
    messages = [q("1"), a("first"), a("second", version=2), q("2"), a("x")]
    shown = versions.grouped(messages)
    assert len(shown) == 4
    group = shown[1]
    assert isinstance(group, versions.Replies)
    assert [r["content"] for r in group.replies] == ["first", "second"]
    assert not group.side_by_side
    assert group.newest["content"] == "second"
    assert versions.marks(messages) == [None, "version 1 of 2", "version 2 of 2", None, None]


def test_a_comparison_saved_in_either_order_shows_version_1_on_the_left() -> None:
    messages = [
        q("1"),
        a("B", "m2", version=2, compare=True),
        a("A", "m1", compare=True),
    ]
    group = versions.grouped(messages)[1]
    assert isinstance(group, versions.Replies) and group.side_by_side
    assert [r["content"] for r in group.replies] == ["A", "B"]
    assert versions.marks(messages)[1:] == ["side by side 2 of 2", "side by side 1 of 2"]


def test_the_context_carries_one_version_the_newest_or_the_answering_models_own() -> None:
    messages = [
        q("1"),
        a("old", "m1"),
        a("new", "m2", version=2),
        q("2"),
        a("A", "m1", compare=True),
        a("B", "m2", version=2, compare=True),
        q("3"),
    ]
    anyone = [m["content"] for m in versions.for_context(messages, "m3")]
    assert anyone == ["1", "new", "2", "B", "3"]
    own = [m["content"] for m in versions.for_context(messages, "m1")]
    assert own == ["1", "old", "2", "A", "3"]


def test_last_question_counts_its_replies_and_the_next_version() -> None:
    assert versions.last_question([]) is None
    assert versions.last_question([a("hello")]) is None
    found = versions.last_question([q("1"), a("x"), q("2"), a("y"), a("z", version=3)])
    assert found == versions.LastQuestion(index=2, question="2", replies=2, next_version=4)
    unanswered = versions.last_question([q("1"), a("x"), q("2")])
    assert unanswered == versions.LastQuestion(index=2, question="2", replies=0, next_version=1)


def test_label_names_the_version_and_the_model() -> None:
    assert versions.label(a("x", "llama3.2:3b", version=2), 3) == "Version 2 of 3 · llama3.2:3b"
    assert versions.label({"role": "assistant", "content": "x"}, 2) == "Version 1 of 2"
