"""Login in a real browser: the cookie is stored and deleted, reloads and new tabs follow it,
deep links survive the login, and a password change ends another browser's cookie.

AppTest cannot show any of this: the cookie is written by a component in the browser.
"""

from __future__ import annotations

from typing import Any

from core import database
from tests.support.browser import (
    click_and_settle,
    go,
    has_cookie,
    idle,
    log_in,
    log_out,
    login_form_shown,
    main_text,
    nav,
    new_context,
    open_page,
)

PASSWORD = "correct horse battery"


def test_the_cookie_keeps_a_reload_logged_in_until_logout(
    app_url: str, chromium: Any, alice: None
) -> None:
    context = new_context(chromium)
    page = open_page(context, app_url)
    assert nav(page) == ["🔑 Login", "📝 Register"]
    log_in(page, "alice", PASSWORD)
    assert nav(page) == [
        "💬 Chat",
        "🗂️ Sessions",
        "🧮 Data",
        "📄 Documents",
        "📊 Usage",
        "👤 Account",
    ]
    assert has_cookie(context)

    page.reload()
    idle(page)
    assert not login_form_shown(page) and "Signed in as" in page.inner_text("body")
    assert not login_form_shown(open_page(context, app_url))  # a new tab too

    log_out(page)
    assert login_form_shown(page) and not has_cookie(context)
    page.reload()
    idle(page)
    assert login_form_shown(page)
    context.close()


def test_a_deep_link_opens_its_page_after_login(app_url: str, chromium: Any, alice: None) -> None:
    context = new_context(chromium)
    page = open_page(context, app_url + "/usage")
    assert "Log in to open Usage." in main_text(page)
    log_in(page, "alice", PASSWORD)
    assert page.url.endswith("/usage")
    assert page.locator("h1").first.inner_text().strip() == "Usage"
    context.close()


def test_a_password_change_ends_the_other_browsers_cookie(
    app_url: str, chromium: Any, alice: None
) -> None:
    mine, theirs = new_context(chromium), new_context(chromium)
    other = open_page(theirs, app_url)
    log_in(other, "alice", PASSWORD)
    page = open_page(mine, app_url)
    log_in(page, "alice", PASSWORD)
    go(page, "Account")
    page.get_by_label("Current password", exact=True).fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("a brand new passphrase")
    page.get_by_label("Repeat new password", exact=True).fill("a brand new passphrase")
    click_and_settle(page, page.get_by_role("button", name="Change password"))
    assert "Password changed" in main_text(page)

    other.reload()
    idle(other)
    assert login_form_shown(other)  # the old cookie is refused by the server
    page.reload()
    idle(page)
    assert not login_form_shown(page)  # this browser got a fresh cookie
    mine.close()
    theirs.close()


def test_a_cookie_copied_before_logout_no_longer_signs_in(
    app_url: str, chromium: Any, alice: None
) -> None:
    """Logout ends the login on the server: a copy of its cookie (a stolen file, a second
    browser fed the same value) is refused afterwards, while another login of the same user
    stays signed in."""
    context, elsewhere = new_context(chromium), new_context(chromium)
    page = open_page(context, app_url)
    log_in(page, "alice", PASSWORD)
    other = open_page(elsewhere, app_url)
    log_in(other, "alice", PASSWORD)  # another browser, its own login
    copied = [c for c in context.cookies() if c["name"] == "ledger_auth"]
    assert copied and has_cookie(context)

    log_out(page)
    thief = new_context(chromium)
    thief.add_cookies(copied)
    stolen = open_page(thief, app_url)
    assert login_form_shown(stolen)

    other.reload()
    idle(other)
    assert not login_form_shown(other)
    for ctx in (context, elsewhere, thief):
        ctx.close()


def test_a_browser_used_before_still_logs_in_while_the_name_is_locked_for_new_ones(
    app_url: str, chromium: Any, alice: None
) -> None:
    """Someone guessing alice's password from many addresses locks the name for new browsers,
    never for hers: the browser she signed in with before keeps a device part in its cookie
    after Logout, and its attempts count apart (OWASP's device cookies)."""
    from datetime import timedelta

    from sqlalchemy.dialects.postgresql import insert

    from core import clock, login
    from core.models import LoginAttempt

    hers = new_context(chromium)
    page = open_page(hers, app_url)
    log_in(page, "alice", PASSWORD)
    log_out(page)
    with database.session_scope() as session:  # what many guesses from elsewhere leave behind
        lock = {"failed": 20, "locked_until": clock.now() + timedelta(minutes=15)}
        session.execute(
            insert(LoginAttempt)
            .values(name="alice", client=login.UNTRUSTED, updated_at=clock.now(), **lock)
            .on_conflict_do_update(index_elements=["name", "client"], set_=lock)
        )

    stranger = new_context(chromium)
    other = open_page(stranger, app_url)
    log_in(other, "alice", PASSWORD)
    assert login_form_shown(other)
    assert "log in from a browser you have used before" in main_text(other)

    page = open_page(hers, app_url)
    log_in(page, "alice", PASSWORD)
    assert not login_form_shown(page) and "Signed in as" in page.inner_text("body")
    for ctx in (hers, stranger):
        ctx.close()
