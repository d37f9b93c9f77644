"""Values the pages show, computed in core: account states on the admin page, the model
picker's options on the chat page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd

from core import admin, llm

NOW = datetime(2026, 4, 10, 9, 30, tzinfo=UTC)


def summary(**changes: object) -> admin.UserSummary:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "username": "ann",
        "display_name": "Ann",
        "email": "ann@example.com",
        "role": "user",
        "disabled": False,
        "locked_until": None,
        "must_change_password": False,
        "created_at": NOW - timedelta(days=3),
        "last_login_at": None,
        "requests": 2,
        "prompt_tokens": 10,
        "completion_tokens": 5,
    }
    fields.update(changes)
    return admin.UserSummary(**fields)  # type: ignore[arg-type]


def test_account_states_in_the_order_that_matters() -> None:
    locked = NOW + timedelta(minutes=15)
    assert summary().status(now=NOW) == "active"
    assert summary(must_change_password=True).status(now=NOW) == "must change password"
    assert summary(locked_until=locked).status(now=NOW) == "locked for new browsers until 09:45 UTC"
    assert summary(locked_until=NOW - timedelta(seconds=1)).status(now=NOW) == "active"
    assert summary(disabled=True, locked_until=locked).status(now=NOW) == "disabled"


def test_the_admin_table_has_one_row_per_account_with_usage_totals() -> None:
    frame = admin.users_frame([summary(), summary(username="bo", disabled=True)], now=NOW)
    assert list(frame["username"]) == ["ann", "bo"]
    assert list(frame["status"]) == ["active", "disabled"]
    assert list(frame["tokens"]) == [15, 15]
    assert list(frame.columns)[:7] == [
        "username",
        "display name",
        "role",
        "status",
        "last login",
        "requests",
        "tokens",
    ]  # what an administrator scans first, before email and creation date


def test_nobody_having_logged_in_reads_never_not_none() -> None:
    frame = admin.users_frame([summary(), summary(username="bo")], now=NOW)
    assert isinstance(frame["last login"].dtype, pd.DatetimeTZDtype)
    assert list(admin.for_display(frame)["last login"]) == ["never", "never"]


def test_the_picker_starts_on_an_installed_model_and_says_which_is_missing() -> None:
    # The configured model is installed ("llama3.2" is "llama3.2:latest" to Ollama).
    assert llm.model_choices(["a:1b", "b:7b"], "b:7b") == ["a:1b", "b:7b"]
    assert llm.preferred_model(["a:1b", "b:7b"], "b:7b") == "b:7b"
    assert llm.preferred_model(["llama3.2:latest"], "llama3.2") == "llama3.2:latest"
    assert llm.missing_model_note(["a:1b", "b:7b"], "b:7b") is None
    # Not installed: the first installed chat model answers, and the page says so first.
    installed = ["nomic-embed-text:latest", "qwen2.5:0.5b"]
    assert llm.model_choices(installed, "llama3.2:3b") == ["qwen2.5:0.5b"]
    assert llm.preferred_model(installed, "llama3.2:3b") == "qwen2.5:0.5b"
    note = llm.missing_model_note(installed, "llama3.2:3b")
    assert note is not None and "llama3.2:3b is not installed" in note and "qwen2.5:0.5b" in note
    # Nothing to chat with: the configured one, and how to install it.
    assert llm.model_choices(["nomic-embed-text"], "llama3.2:3b") == ["llama3.2:3b"]
    assert "ollama pull llama3.2:3b" in (
        llm.missing_model_note(["nomic-embed-text"], "llama3.2:3b") or ""
    )
    # The server did not answer: no list, no claim about what is missing (sending says why).
    assert llm.model_choices([], "llama3.2:3b") == ["llama3.2:3b"]
    assert llm.missing_model_note([], "llama3.2:3b") is None
