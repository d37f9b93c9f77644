"""Browser tests: one headless Chromium per run, one app process per module.

Without Chromium these tests are skipped, never silently: the summary ends with a banner that
says why (``make test`` installs Debian's chromium when it runs as root with apt-get).
LEDGER_REQUIRE_BROWSER=1 turns that skip into a failure (for CI, where the browser must run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from core import accounts, database
from tests.support import browser
from tests.support.app_server import AppServer

ALICE_PASSWORD = "correct horse battery"

REASON = browser.unavailable_reason()
_skipped: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if REASON is None:
        return
    for item in items:
        if "chromium" in getattr(item, "fixturenames", ()):
            if os.environ.get("LEDGER_REQUIRE_BROWSER") == "1":
                item.add_marker(pytest.mark.usefixtures("_browser_required"))
            else:
                item.add_marker(pytest.mark.skip(reason=f"BROWSER TESTS NOT RUN: {REASON}"))
            _skipped.append(item.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _skipped or os.environ.get("LEDGER_REQUIRE_BROWSER") == "1":
        return
    bar = "!" * 78
    terminalreporter.write_line(bar, red=True, bold=True)
    terminalreporter.write_line(
        f"{len(_skipped)} BROWSER TESTS WERE NOT RUN: {REASON}", red=True, bold=True
    )
    terminalreporter.write_line(bar, red=True, bold=True)


@pytest.fixture
def _browser_required() -> None:
    pytest.fail(f"LEDGER_REQUIRE_BROWSER=1 but {REASON}")


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """The run's browser; each test opens its own context (cookies, storage) in it."""
    with browser.chromium() as b:
        yield b


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    ctx = browser.new_context(chromium, accept_downloads=True)
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def app_url(services_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app for a module's browser tests (a module may define its own, with other settings).
    services_env put DATABASE_URL / REDIS_URL in the environment the app inherits; the login
    cookie needs LOGIN_SLEEP_TIME to be written before the page reruns."""
    log = tmp_path_factory.mktemp("app") / "streamlit.log"
    server = AppServer({"LOGIN_SLEEP_TIME": "2"}, log_path=log)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def alice(clean_state: None) -> None:
    with database.session_scope() as session:
        accounts.create_user(
            session, username="alice", email="a@example.com", display_name="Alice",
            password=ALICE_PASSWORD,
        )  # fmt: skip
