"""Validators accept a value (normalised, within its rules) or refuse it with InvalidInput
naming the field; no input, however odd, makes them fail any other way."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given

from core import accounts, sessions
from core.errors import InvalidInput
from tests.support.strategies import any_text, ten_kilobytes


def outcome(validate: Callable[[str], str], value: str, field: str) -> str | None:
    try:
        return validate(value)
    except InvalidInput as exc:
        assert exc.field == field
        assert str(exc).endswith(".")  # a whole sentence for the page
        return None


@given(value=any_text | ten_kilobytes)
def test_username_is_valid_ascii_or_refused(value: str) -> None:
    result = outcome(accounts.validate_username, value, "username")
    if result is not None:
        assert accounts.USERNAME_RE.fullmatch(result) and result == value.strip()


@given(value=any_text | ten_kilobytes)
def test_display_name_is_one_clean_line_or_refused(value: str) -> None:
    result = outcome(accounts.validate_display_name, value, "display_name")
    if result is not None:
        assert 0 < len(result) <= accounts.MAX_DISPLAY_NAME
        assert result == " ".join(result.split())
        assert not accounts._has_control(result)
        assert accounts.validate_display_name(result) == result  # stable


@given(value=any_text | ten_kilobytes)
def test_email_is_plausible_or_refused(value: str) -> None:
    result = outcome(accounts.validate_email, value, "email")
    if result is not None:
        assert "@" in result and len(result) <= 254 and result == value.strip()


@given(value=any_text | ten_kilobytes)
def test_password_is_kept_exactly_or_refused(value: str) -> None:
    result = outcome(accounts.validate_password, value, "password")
    assert result in (None, value)


@given(value=any_text | ten_kilobytes)
def test_typed_title_is_one_printable_line_or_refused(value: str) -> None:
    result = outcome(sessions.clean_title, value, "title")
    if result is not None:
        assert 0 < len(result) <= sessions.MAX_TITLE
        assert result.isprintable() and result == " ".join(result.split())
        assert sessions.clean_title(result) == result


@given(value=any_text | ten_kilobytes)
def test_title_made_from_a_prompt_is_cut_to_fit(value: str) -> None:
    result = outcome(lambda v: sessions.clean_title(v, truncate=True), value, "title")
    if result is None:
        assert not "".join(ch for ch in value if ch.isprintable()).strip()
    else:
        assert len(result) <= sessions.MAX_TITLE


@pytest.mark.parametrize(
    "name",
    [
        "Zoë «Ω» 李",
        "می\u200cخواهم",  # Persian needs the zero-width non-joiner
        "Ana \U0001f469\u200d\U0001f4bb",  # emoji sequences need the zero-width joiner
        "O'Brien; DROP TABLE users;--",
        unicodedata.normalize("NFD", "Zoë"),  # kept as typed, not re-normalised
    ],
)
def test_real_names_are_accepted_as_typed(name: str) -> None:
    assert accounts.validate_display_name(name) == name


@pytest.mark.parametrize(
    "name", ["evil\u202egnp.exe", "tab\x00null", "bell\x07", "lone \ud800 surrogate"]
)
def test_names_that_can_disguise_or_break_text_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="control characters"):
        accounts.validate_display_name(name)


@given(value=any_text | ten_kilobytes)
def test_prompt_is_cleaned_text_or_refused(value: str) -> None:
    from core import chat
    from core.errors import EmptyPrompt

    try:
        result = chat.clean_prompt(value, max_chars=16_000)
    except EmptyPrompt:
        assert not unicodedata.normalize("NFC", chat._CONTROL.sub("", value)).strip()
        return
    except InvalidInput as exc:
        assert exc.field == "prompt" and "the limit is 16,000 characters" in str(exc)
        return
    assert result and result == result.strip()
    assert not chat._CONTROL.search(result) and not chat._SURROGATE.search(result)
    assert "\r" not in result
    assert chat.clean_prompt(result, max_chars=16_000) == result  # stable
    assert sessions.title_from_prompt(result)  # every prompt can title its session


@given(value=any_text)
def test_role_is_one_of_the_known_roles_or_refused(value: str) -> None:
    result = outcome(accounts.validate_role, value, "role")
    assert result in (None, "user", "admin")
