"""Hostile text in password fields, through the router (app/router.py): SQL, HTML, quotes and any
Unicode are just characters of a password, and a 100 kB value is refused with a message.

Registering with such a password and logging in with it works exactly (one character off
does not); on the Account page each of the three fields given such a value either changes the
password as asked or says why not and changes nothing: not the stored password, not the
logins (this browser stays signed in)."""

from __future__ import annotations

from datetime import datetime

import pytest
from streamlit.testing.v1 import AppTest

from core import accounts, database, passwords
from tests.support import people
from tests.support.people import PASSWORD, stored
from tests.support.router import browser, errors, go, login, page, signed_in

# SQL, HTML, both quotes, a backslash, CJK, emoji (with a zero-width joiner), a combining accent
HOSTILE = "'; DROP TABLE users;-- \"<script>alert('x')</script>\\ 李雷 🧾👩‍💼 e\u0301"
HUGE = "p" * 100_000
NEW = "a brand new passphrase"


def register(at: AppTest, password: str) -> AppTest:
    fields = {
        "username": "zoe",
        "email": "zoe@example.com",
        "display_name": "Zoe",
        "password": password,
        "password_confirm": password,
    }
    for name, value in fields.items():
        at.text_input(key=f"reg_{name}").input(value)
    return at.button[0].click().run()


def test_a_registered_hostile_password_logs_in_exactly(jar: dict[str, str]) -> None:
    at = register(browser().switch_page("../pages/register.py").run(), HOSTILE)
    assert errors(at) == [] and "Account zoe created" in at.success[0].value
    assert passwords.verify_password(HOSTILE, stored("zoe").password_hash)

    for near_miss in (HOSTILE[:-1], HOSTILE.replace("'", '"'), HOSTILE.replace("李", "季")):
        assert errors(login(browser(), "zoe", near_miss)) == ["Wrong username or password."]
    assert page(login(browser(), "zoe", HOSTILE)) == "Chat"


def test_a_hundred_kilobyte_registration_password_is_refused(jar: dict[str, str]) -> None:
    at = register(browser().switch_page("../pages/register.py").run(), HUGE)
    assert errors(at) == ["**Password**: Password must be at most 1024 characters."]
    with database.session_scope() as session:
        assert accounts.get_by_username(session, username="zoe") is None


# --- the Account page's three fields --------------------------------------------------------


@pytest.fixture
def account(jar: dict[str, str]) -> AppTest:
    """alice signed in, on the Account page."""
    with database.session_scope() as session:
        people.make_user(session, "alice")
    at = go(login(browser(), "alice"), "account")
    assert page(at) == "Account"
    return at


def change(at: AppTest, current: str, new: str, confirm: str) -> AppTest:
    at.text_input(key="pw_current").input(current)
    at.text_input(key="pw_new").input(new)
    at.text_input(key="pw_confirm").input(confirm)
    return at.button(key="pw_submit").click().run()


REFUSED = {
    "hostile current password": (HOSTILE, NEW, NEW, "The current password is wrong."),
    "huge current password": (HUGE, NEW, NEW, "The current password is wrong."),
    "huge new password": (PASSWORD, HUGE, HUGE, "Password must be at most 1024 characters."),
    "huge confirmation": (PASSWORD, NEW, HUGE, "The two passwords do not match."),
    "hostile new, huge confirmation": (
        PASSWORD,
        HOSTILE,
        HUGE,
        "The two passwords do not match.",
    ),
    "confirmation one quote off": (
        PASSWORD,
        HOSTILE,
        HOSTILE.replace("'", "’"),
        "The two passwords do not match.",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_change_says_why_and_changes_nothing(account: AppTest, case: str) -> None:
    current, new, confirm, message = REFUSED[case]
    before: tuple[str, datetime] = (
        stored("alice").password_hash,
        stored("alice").tokens_valid_after,
    )
    change(account, current, new, confirm)
    assert errors(account) == [message] and not account.success
    assert (stored("alice").password_hash, stored("alice").tokens_valid_after) == before
    assert signed_in(account) is not None and page(account) == "Account"
    assert page(login(browser(), "alice", PASSWORD)) == "Chat"


def test_a_hostile_new_password_is_set_exactly_and_logs_in(account: AppTest) -> None:
    change(account, PASSWORD, HOSTILE, HOSTILE)
    assert errors(account) == [] and "Password changed" in account.success[0].value
    assert signed_in(account) is not None  # this browser continues
    assert errors(login(browser(), "alice", PASSWORD)) == ["Wrong username or password."]
    assert errors(login(browser(), "alice", HOSTILE[:-1])) == ["Wrong username or password."]
    assert page(login(browser(), "alice", HOSTILE)) == "Chat"
