"""The login gate, driven through the router (app/router.py) with Streamlit's AppTest.

Each AppTest is one browser session. Its cookie jar is simulated by replacing
``app.auth.request_cookie`` (AppTest cannot send cookies); tokens are made by the same
``core.cookies.issue_token`` the app uses, or forged on purpose.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from app import auth as app_auth
from core import accounts, admin, clock, cookies, database
from core.accounts import Identity
from core.config import get_settings
from core.models import User
from tests.support import people
from tests.support.apptest import Sidebar
from tests.support.people import PASSWORD
from tests.support.router import ROOT, browser, errors, login, page, signed_in


def make_user(name: str = "alice", role: str = "user") -> User:
    with database.session_scope() as session:
        return people.make_user(session, name, role)


def cookie_of(at: AppTest) -> str:
    """The token this session's login cookie holds (what the browser stored)."""
    state = at.session_state[app_auth.AUTH_KEY]
    issued = cookies.from_micros(state["issued_us"])
    return cookies.issue_token(
        username=str(at.session_state["username"]),
        user_id=uuid.UUID(state["uid"]),
        token_id=uuid.UUID(state["tid"]),
        issued_at=issued,
        expires_at=issued + timedelta(days=7),
        key=cookies.cookie_key(),
    )


def users() -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(User)) or 0)


# --- the gate --------------------------------------------------------------------------------


def test_a_visitor_gets_the_login_form_and_nothing_else(
    jar: dict[str, str], sidebar: Sidebar
) -> None:
    at = browser()
    assert page(at) == "Login" and signed_in(at) is None
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert [b.label for b in at.sidebar.button] == []
    assert sidebar.links() == {"": ["Login", "Register"]}


def test_register_then_login_opens_chat_and_logout_closes_the_gate(jar: dict[str, str]) -> None:
    at = browser().switch_page("../pages/register.py").run()
    assert page(at) == "Register"
    at.text_input(key="reg_username").input("Zoe.Analyst")
    at.text_input(key="reg_email").input("zoe@example.com")
    at.text_input(key="reg_display_name").input("Zoë «Ω» <b>Analyst</b>")
    at.text_input(key="reg_password").input("ebitda margins 2026")
    at.text_input(key="reg_password_confirm").input("ebitda margins 2026")
    at.button[0].click().run()
    assert page(at) == "Login"
    assert "Account Zoe\\.Analyst created" in at.success[0].value

    # AppTest keeps requesting the page given to at.switch_page (a browser follows the
    # script's own st.switch_page): say that this browser is now on /login.
    at.switch_page("../pages/login.py")
    login(at, "zoe.analyst", "ebitda margins 2026")
    assert page(at) == "Chat" and at.title[0].value == "Chat"
    identity = signed_in(at)
    assert identity is not None and identity.display_name == "Zoë «Ω» <b>Analyst</b>"
    assert "Zoë «Ω» \\<b\\>Analyst\\<\\/b\\>" in at.sidebar.caption[0].value  # shown as text

    at.sidebar.button(key="Logout").click().run()
    assert page(at) == "Login"
    assert signed_in(at) is None and at.success[0].value == "You are logged out."
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    login(at, "zoe.analyst", "not the password")  # within the notice's few seconds
    assert errors(at) == ["Wrong username or password."] and not at.success  # only the news


def test_wrong_password_and_unknown_user_read_the_same(jar: dict[str, str]) -> None:
    make_user()
    at = browser()
    login(at, "alice", "not the password")
    wrong = errors(at)
    login(at, "mallory", "not the password")
    assert wrong == errors(at) == ["Wrong username or password."]
    assert signed_in(at) is None


def test_five_failures_lock_and_the_lock_lifts_after_fifteen_minutes(
    jar: dict[str, str],
) -> None:
    now = [datetime(2026, 11, 26, 9, 0, tzinfo=UTC)]
    clock.set_source(lambda: now[0])
    make_user()
    at = browser()
    for _ in range(4):
        login(at, "alice", "not the password")
        assert errors(at) == ["Wrong username or password."]
    login(at, "alice", "not the password")
    assert errors(at) == ["Too many failed logins: try again in 15 minutes."]
    login(at, "alice", PASSWORD)
    assert errors(at) == ["Too many failed logins: try again in 15 minutes."]
    assert signed_in(at) is None

    now[0] += timedelta(minutes=15, seconds=1)
    login(at, "alice", PASSWORD)
    assert page(at) == "Chat" and signed_in(at) is not None


def test_a_disabled_account_says_so_only_after_the_right_password(jar: dict[str, str]) -> None:
    boss, alice = make_user("boss", "admin"), make_user()
    with database.session_scope() as session:
        admin.set_disabled(session, actor_id=boss.id, user_id=alice.id, disabled=True)
    at = browser()
    login(at, "alice", "not the password")
    assert errors(at) == ["Wrong username or password."]
    login(at, "alice", PASSWORD)
    assert errors(at) == ["This account is disabled. Ask an administrator to enable it."]
    assert signed_in(at) is None


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice' OR '1'='1' --", PASSWORD),
        ("<script>alert(1)</script>", PASSWORD),
        ("alice", "' OR '1'='1"),
        ("ålice李", "pässwörd 李 🧾"),
        ("alice", "p" * 100_000),
        ("a" * 10_000, PASSWORD),
    ],
)
def test_hostile_login_input_is_just_a_failed_login(
    jar: dict[str, str], username: str, password: str
) -> None:
    make_user()
    at = login(browser(), username, password)
    assert errors(at) == ["Wrong username or password."]
    assert signed_in(at) is None and users() == 1
    assert login(at, "alice").session_state["page"] == "Chat"


# --- cookies ---------------------------------------------------------------------------------


def test_returning_with_the_cookie_skips_the_login_form(jar: dict[str, str]) -> None:
    make_user()
    first = login(browser(), "alice")
    jar[get_settings().auth_cookie_name] = cookie_of(first)
    second = browser()
    assert page(second) == "Chat" and signed_in(second) is not None
    assert not {"Username", "Password"} & {t.label for t in second.text_input}  # no login form


def forged(kind: str, user: User) -> str:
    now = clock.now()
    with database.session_scope() as session:
        token = accounts.issue_login_token(
            session, user_id=user.id, issued_at=now, expires_at=now + timedelta(days=7)
        )
        if kind == "logged out":
            accounts.revoke_login_token(session, user_id=user.id, token_id=token)
    claims = {
        "username": "alice",
        "exp_date": (now + timedelta(days=7)).timestamp(),
        "uid": str(user.id),
        "tid": str(token),
        "iat_us": cookies.to_micros(now),
    }
    key = cookies.cookie_key()
    if kind == "wrong key":
        return jwt.encode(claims, "a different key, long enough: 0123456789", algorithm="HS256")
    if kind == "expired":
        claims["exp_date"] = (now - timedelta(seconds=1)).timestamp()
    if kind == "unsigned":
        return jwt.encode(claims, None, algorithm="none")
    if kind == "no user id":
        del claims["uid"]
    if kind == "other user id":
        claims["uid"] = str(uuid.uuid4())
    if kind == "issued before the account":
        claims["iat_us"] = cookies.to_micros(now - timedelta(days=1))
    if kind == "no login token":
        del claims["tid"]
    if kind == "unknown login token":
        claims["tid"] = str(uuid.uuid4())
    return jwt.encode(claims, key, algorithm="HS256")


@pytest.mark.parametrize(
    "kind",
    [
        "wrong key",
        "expired",
        "unsigned",
        "no user id",
        "other user id",
        "issued before the account",
        "no login token",
        "unknown login token",
        "logged out",  # a copy of a cookie whose login ended with Logout
    ],
)
def test_forged_or_expired_cookies_get_the_login_form(jar: dict[str, str], kind: str) -> None:
    user = make_user()
    jar[get_settings().auth_cookie_name] = forged(kind, user)
    at = browser()
    assert page(at) == "Login" and signed_in(at) is None


def test_a_genuine_cookie_passes_the_same_gate(jar: dict[str, str]) -> None:
    user = make_user()
    jar[get_settings().auth_cookie_name] = forged("genuine", user)
    assert page(browser()) == "Chat"


def test_password_change_ends_other_sessions_and_refuses_old_cookies(
    jar: dict[str, str],
) -> None:
    make_user()
    mine = login(browser(), "alice")
    old_cookie = cookie_of(mine)
    jar[get_settings().auth_cookie_name] = old_cookie
    other = browser()
    assert page(other) == "Chat"

    mine.switch_page("../pages/account.py").run()
    mine.text_input(key="pw_current").input(PASSWORD)
    mine.text_input(key="pw_new").input("a brand new passphrase")
    mine.text_input(key="pw_confirm").input("a brand new passphrase")
    mine.button(key="pw_submit").click().run()
    assert page(mine) == "Account" and signed_in(mine) is not None  # this browser continues
    assert "Password changed" in mine.success[0].value

    other.run()
    assert signed_in(other) is None and "session has ended" in other.warning[0].value
    assert page(browser()) == "Login"  # the old cookie in a fresh tab
    jar[get_settings().auth_cookie_name] = cookie_of(mine)  # the re-issued cookie works
    assert page(browser()) == "Chat"
    assert old_cookie != jar[get_settings().auth_cookie_name]


def test_log_out_everywhere_ends_this_and_every_other_session(jar: dict[str, str]) -> None:
    make_user()
    mine = login(browser(), "alice")
    jar[get_settings().auth_cookie_name] = cookie_of(mine)
    other = browser()
    mine.switch_page("../pages/account.py").run()
    mine.button(key="logout_everywhere").click().run()
    assert signed_in(mine) is None and "logged out everywhere" in mine.success[0].value
    assert signed_in(other.run()) is None
    assert page(browser()) == "Login"


def test_a_deep_link_survives_the_login(jar: dict[str, str]) -> None:
    """A session that ends while on /usage shows the login form there, then Usage."""
    make_user()
    at = login(browser(), "alice").switch_page("../pages/usage.py").run()
    assert page(at) == "Usage"
    with database.session_scope() as session:
        accounts.logout_everywhere(session, user_id=signed_in(at).id)  # type: ignore[union-attr]
    at.run()
    assert page(at) == "Usage" and signed_in(at) is None
    assert at.info[0].value == "Log in to open Usage."
    login(at, "alice")
    assert page(at) == "Usage" and at.title[0].value == "Usage"


# --- admin -----------------------------------------------------------------------------------


def test_a_non_admin_is_refused_the_admin_page(jar: dict[str, str]) -> None:
    make_user("boss", "admin")
    make_user("other", "admin")
    at = login(browser(), "other").switch_page("../pages/admin.py").run()
    assert page(at) == "Admin" and at.dataframe
    with database.session_scope() as session:
        boss = accounts.get_by_username(session, username="boss")
        other = accounts.get_by_username(session, username="other")
        admin.set_role(session, actor_id=boss.id, user_id=other.id, role="user")  # type: ignore[union-attr]
    at.run()  # the role change ended the session: log in again as a regular user
    login(at, "other")
    assert page(at) == "Admin"
    assert errors(at) == ["This page is for administrators."] and not at.dataframe


def test_the_admin_page_itself_refuses_a_non_admin_identity(jar: dict[str, str]) -> None:
    user = make_user()
    at = AppTest.from_file(str(ROOT / "pages" / "admin.py"), default_timeout=30)
    at.session_state["identity"] = Identity(user.id, "alice", "Alice", "user")
    at.run()
    assert errors(at) == ["This page is for administrators."] and not at.dataframe


def test_admin_disables_a_user_whose_session_then_ends(jar: dict[str, str]) -> None:
    make_user("boss", "admin")
    make_user()
    alice = login(browser(), "alice")
    boss = login(browser(), "boss").switch_page("../pages/admin.py").run()
    boss.selectbox(key="admin_user").select("alice").run()
    boss.button(key="admin_toggle").click().run()
    assert "alice disabled." in boss.success[0].value
    assert signed_in(alice.run()) is None
    login(alice, "alice")
    assert errors(alice) == ["This account is disabled. Ask an administrator to enable it."]


def test_admin_cannot_disable_themselves(jar: dict[str, str]) -> None:
    make_user("boss", "admin")
    boss = login(browser(), "boss").switch_page("../pages/admin.py").run()
    boss.selectbox(key="admin_user").select("boss").run()
    boss.button(key="admin_toggle").click().run()
    assert errors(boss) == ["You cannot disable your own account."]


def test_a_one_time_password_is_shown_once_and_must_be_replaced(
    jar: dict[str, str], sidebar: Sidebar
) -> None:
    make_user("boss", "admin")
    make_user()
    boss = login(browser(), "boss").switch_page("../pages/admin.py").run()
    boss.selectbox(key="admin_user").select("alice").run()
    boss.button(key="admin_reset").click().run()
    boss.button(key="admin_reset_yes").click().run()
    (shown,) = [c.value for c in boss.code]
    boss.run()
    assert not boss.code  # once

    alice = login(browser(), "alice", shown)
    assert page(alice) == "Account"
    assert "one-time password" in alice.warning[0].value
    assert sidebar.links() == {"": ["Account"]}  # nothing else until it is replaced
    alice.text_input(key="pw_current").input(shown)
    alice.text_input(key="pw_new").input("my own passphrase now")
    alice.text_input(key="pw_confirm").input("my own passphrase now")
    alice.button(key="pw_submit").click().run()
    assert page(alice) == "Account" and not signed_in(alice).must_change_password  # type: ignore[union-attr]
    assert sidebar.links() == {"": ["Chat", "Sessions", "Data", "Documents", "Usage", "Account"]}
    alice.switch_page("../pages/chat.py").run()
    assert page(alice) == "Chat"


# --- registration ----------------------------------------------------------------------------


def register(at: AppTest, **fields: str) -> AppTest:
    values = {
        "username": "newbie",
        "email": "newbie@example.com",
        "display_name": "Newbie",
        "password": "a long enough password",
        "password_confirm": "a long enough password",
    }
    values.update(fields)
    for name, value in values.items():
        at.text_input(key=f"reg_{name}").input(value)
    return at.button[0].click().run()


@pytest.fixture
def form(jar: dict[str, str]) -> AppTest:
    return browser().switch_page("../pages/register.py").run()


def test_a_username_taken_in_another_case_is_refused(form: AppTest) -> None:
    make_user("Alice")
    register(form, username="aLICE")
    assert errors(form) == ["**Username**: That username is taken."]
    assert users() == 1


def test_a_taken_email_is_refused(form: AppTest) -> None:
    make_user("alice")
    register(form, email="ALICE@example.com")
    assert errors(form) == ["**Email**: An account with that email already exists."]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"username": "robert'); DROP TABLE users;--"}, "**Username**: Username must be 3 to 32"),
        ({"username": "<script>x</script>"}, "**Username**: Username must be 3 to 32"),
        ({"username": "zoë"}, "**Username**: Username must be 3 to 32"),
        ({"email": "<b>x</b>@example.com"}, "**Email**: Enter a valid email"),
        ({"email": "x'; DROP TABLE users;--@x.com"}, "**Email**: Enter a valid email"),
        ({"display_name": "   "}, "**Display name**: Display name must not be empty"),
        (
            {"password": "short", "password_confirm": "short"},
            "**Password**: Password must be at least 12",
        ),
        (
            {"password": "p" * 100_000, "password_confirm": "p" * 100_000},
            "**Password**: Password must be at most 1024",
        ),
        (
            {"password_confirm": "something else entirely"},
            "**Repeat password**: The two passwords do not match.",
        ),
        (
            {
                "username": "samesame1234",
                "password": "SameSame1234",
                "password_confirm": "SameSame1234",
            },
            "**Password**: Password must not be the same as the username.",
        ),
    ],
)
def test_bad_registrations_get_a_message_per_field_and_save_nothing(
    form: AppTest, fields: dict[str, str], expected: str
) -> None:
    register(form, **fields)
    assert any(message.startswith(expected) for message in errors(form)), errors(form)
    assert users() == 0 and page(form) == "Register"


def test_all_broken_rules_are_listed_together(form: AppTest) -> None:
    register(form, username="x", email="nope", display_name="", password="short")
    assert [message.split("**")[1] for message in errors(form)] == [
        "Username",
        "Email",
        "Display name",
        "Password",
    ]


def test_unicode_and_markup_in_the_display_name_are_kept_verbatim(form: AppTest) -> None:
    name = "Robert'); DROP TABLE users;-- <img src=x onerror=alert(1)> 李 🧾"
    register(form, display_name=name)
    with database.session_scope() as session:
        stored = accounts.get_by_username(session, username="newbie")
        assert stored is not None and stored.display_name == name


def test_registration_can_be_switched_off(
    jar: dict[str, str], monkeypatch: pytest.MonkeyPatch, sidebar: Sidebar
) -> None:
    monkeypatch.setenv("ALLOW_REGISTRATION", "false")
    get_settings.cache_clear()
    try:
        at = browser()
        assert sidebar.links() == {"": ["Login"]}
        assert "register" not in sidebar.url_paths()  # /register is not even answered
        assert at.caption[0].value == "Accounts are created by an administrator."
        # AppTest's way of saying that st.navigation registered no page for the file:
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page("../pages/register.py")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


# --- failure of the services -----------------------------------------------------------------


def test_storage_down_at_start_shows_one_clear_error(
    jar: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://ledger@127.0.0.1:1/ledger")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    try:
        at = browser()
        assert not at.exception
        (message,) = errors(at)
        assert "cannot reach its storage" in message
        assert "postgres" in message and "redis" in message
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_an_example_cookie_key_stops_the_app_naming_the_variable(
    jar: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_COOKIE_KEY", "some_signature_key")
    get_settings.cache_clear()
    try:
        at = browser()
        assert not at.exception
        (message,) = errors(at)
        assert "AUTH\\_COOKIE\\_KEY" in message and "example key" in message
        assert not at.text_input  # no login form on an unsafe key
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_the_app_generates_the_cookie_key_itself_when_started_without_make_run(
    jar: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AUTH_COOKIE_KEY")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        make_user()
        at = login(browser(), "alice")
        assert page(at) == "Chat"
        key_file = tmp_path / "data" / cookies.KEY_FILE
        assert key_file.stat().st_mode & 0o777 == 0o600
        jar[get_settings().auth_cookie_name] = cookie_of(at)  # signed with the generated key
        assert page(browser()) == "Chat"
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


@pytest.fixture
def cookie_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every cookie the app asks the browser's cookie component to write, with its options
    (AppTest runs no component, so this is where the flags can be seen)."""
    component = importlib.import_module("extra_streamlit_components.CookieManager")

    writes: list[dict[str, Any]] = []
    real = component._component_func

    def record(**kwargs: Any) -> Any:
        if kwargs.get("method") == "set":
            writes.append({"name": kwargs["cookie"], **kwargs["options"]})
        return real(**kwargs)

    monkeypatch.setattr(component, "_component_func", record)
    yield writes


@pytest.mark.parametrize("secure", [True, False])
def test_login_cookies_are_secure_when_served_over_https_and_always_same_site_strict(
    jar: dict[str, str],
    cookie_writes: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    secure: bool,
) -> None:
    monkeypatch.setenv("AUTH_COOKIE_SECURE", str(secure).lower())
    get_settings.cache_clear()
    try:
        make_user()
        at = login(browser(), "alice")
        at.sidebar.button(key="Logout").click().run()  # rewritten to its device part
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert len(cookie_writes) == 2
    assert {write["name"] for write in cookie_writes} == {"ledger_auth"}
    assert {(w.get("secure", False), w["sameSite"]) for w in cookie_writes} == {(secure, "strict")}


def test_the_account_page_shows_the_email_and_renames_the_user(jar: dict[str, str]) -> None:
    make_user()
    at = login(browser(), "alice").switch_page("../pages/account.py").run()
    assert "email alice\\@example\\.com" in at.markdown[0].value
    at.text_input(key="account_display_name").set_value("   ")
    at.button(key="name_submit").click().run()
    assert errors(at) == ["Display name must not be empty."]
    at.text_input(key="account_display_name").set_value("Alice  <i>Chen</i>")
    at.button(key="name_submit").click().run()
    assert at.success[0].value == "Display name changed to Alice \\<i\\>Chen\\<\\/i\\>."
    identity = signed_in(at)
    assert identity is not None and identity.display_name == "Alice <i>Chen</i>"
    assert "Alice \\<i\\>Chen\\<\\/i\\>" in at.sidebar.caption[0].value
