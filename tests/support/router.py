"""Drive the whole app through its router (app/router.py) with Streamlit's AppTest: one AppTest
is one browser session. Its cookies come from the ``jar`` fixture (tests/app/conftest.py)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.accounts import Identity
from tests.support.people import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
UI = str(ROOT / "app" / "router.py")


def browser() -> AppTest:
    """A new browser session on the app's front page."""
    return AppTest.from_file(UI, default_timeout=30).run()


def login(at: AppTest, username: str, password: str = PASSWORD) -> AppTest:
    at.text_input[0].input(username)
    at.text_input[1].input(password)
    return at.button[0].click().run()


def go(at: AppTest, page: str) -> AppTest:
    """Open pages/<page>.py, as a click on its sidebar link does.

    AppTest keeps requesting the page given to at.switch_page until told otherwise (a
    browser would follow the script's own st.switch_page), so tests say where they go.
    """
    return at.switch_page(f"../pages/{page}.py").run()


def open_url(at: AppTest, url_path: str) -> AppTest:
    """Open /<url_path> as a typed address does, whatever the router registered there: a
    page file, or one of its own small pages (a non-admin's /admin is a refusal, not a file,
    so at.switch_page cannot reach it). Uses AppTest's registry of navigation pages."""
    registered = at._registered_pages
    (page_hash,) = [h for h, info in registered.items() if info.get("url_pathname") == url_path]
    at._page_hash = page_hash
    return at.run()


def page(at: AppTest) -> str:
    """The title of the page this run showed (the router records it)."""
    assert not at.exception, [e.value for e in at.exception]
    return str(at.session_state["page"])


def signed_in(at: AppTest) -> Identity | None:
    if "identity" not in at.session_state:
        return None
    value = at.session_state["identity"]
    return value if isinstance(value, Identity) else None


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]
