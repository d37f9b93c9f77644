"""Login in a real browser: the cookie is stored and deleted, reloads and new tabs follow it,
deep links survive the login, and a password change ends another browser's cookie.

AppTest cannot show any of this: the cookie is written by a component in the browser.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import accounts, db

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not Path(CHROMIUM).exists():  # pragma: no cover - depends on the machine
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True
    )
playwright_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def app_url(services_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "LOGIN_SLEEP_TIME": "2"}  # a real browser needs the cookie wait
    log = tmp_path_factory.mktemp("app") / "streamlit.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the app did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def alice(clean_state: None) -> None:
    with db.session_scope() as session:
        accounts.create_user(
            session, username="alice", email="a@example.com", display_name="Alice",
            password=PASSWORD,
        )  # fmt: skip


def idle(page: Any, hold: float = 0.4, timeout: float = 20) -> None:
    """Wait until the script has stopped running and stayed stopped for ``hold`` seconds."""
    deadline, since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        quiet = page.evaluate(
            """() => { const app = document.querySelector('[data-testid=stApp]');
              return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
                && !document.querySelector('[data-testid=stStatusWidget]')
                && !document.querySelector('[data-stale=true]'); }"""
        )
        if quiet:
            since = since or time.monotonic()
            if time.monotonic() - since >= hold:
                return
        else:
            since = None
        time.sleep(0.05)
    raise TimeoutError("the app did not settle")


def open_page(context: Any, url: str) -> Any:
    page = context.new_page()
    page.goto(url)
    idle(page)
    return page


def log_in(page: Any, username: str = "alice", password: str = PASSWORD) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Login").click()
    page.wait_for_timeout(300)
    idle(page)


def login_form_shown(page: Any) -> bool:
    return page.get_by_label("Password", exact=True).count() > 0


def nav(page: Any) -> list[str]:
    return [
        " ".join(t.split()) for t in page.locator("[data-testid=stSidebarNav] a").all_inner_texts()
    ]


def has_cookie(context: Any) -> bool:
    return any(c["name"] == "ledger_auth" for c in context.cookies())


def test_the_cookie_keeps_a_reload_logged_in_until_logout(
    app_url: str, chromium: Any, alice: None
) -> None:
    context = chromium.new_context()
    page = open_page(context, app_url)
    assert nav(page) == ["🔑 Login", "📝 Register"]
    log_in(page)
    assert nav(page) == ["💬 Chat", "🗂️ Sessions", "📊 Usage", "👤 Account"]
    assert has_cookie(context)

    page.reload()
    idle(page)
    assert not login_form_shown(page) and "Signed in as" in page.inner_text("body")
    assert not login_form_shown(open_page(context, app_url))  # a new tab too

    page.get_by_role("button", name="Logout").click()
    page.wait_for_timeout(300)
    idle(page)
    assert login_form_shown(page) and not has_cookie(context)
    page.reload()
    idle(page)
    assert login_form_shown(page)
    context.close()


def test_a_deep_link_opens_its_page_after_login(app_url: str, chromium: Any, alice: None) -> None:
    context = chromium.new_context()
    page = open_page(context, app_url + "/usage")
    assert "Log in to open Usage." in page.inner_text("[data-testid=stMain]")
    log_in(page)
    assert page.url.endswith("/usage")
    assert page.locator("h1").first.inner_text().strip() == "Usage"
    context.close()


def test_a_password_change_ends_the_other_browsers_cookie(
    app_url: str, chromium: Any, alice: None
) -> None:
    mine, theirs = chromium.new_context(), chromium.new_context()
    other = open_page(theirs, app_url)
    log_in(other)
    page = open_page(mine, app_url)
    log_in(page)
    page.get_by_role("link", name="Account").click()
    idle(page)
    page.get_by_label("Current password", exact=True).fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("a brand new passphrase")
    page.get_by_label("Repeat new password", exact=True).fill("a brand new passphrase")
    page.get_by_role("button", name="Change password").click()
    page.wait_for_timeout(300)
    idle(page)
    assert "Password changed" in page.inner_text("[data-testid=stMain]")

    other.reload()
    idle(other)
    assert login_form_shown(other)  # the old cookie is refused by the server
    page.reload()
    idle(page)
    assert not login_form_shown(page)  # this browser got a fresh cookie
    mine.close()
    theirs.close()
