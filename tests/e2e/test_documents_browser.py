"""Documents in a real browser: drop a PDF on the Documents page (read in the background with
a progress bar), attach it to a chat, ask, click a citation and read the passage it points
at; the check's warning stands under the reply, and all of it again from history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import accounts, database
from tests.support import browser as b
from tests.support import filings
from tests.support.app_server import AppServer, app_for
from tests.support.fake_ollama import FakeOllama
from tests.support.state import empty_tables

USER, PASSWORD = "dora", "a passphrase for dora"
REPLY = "[data-testid=stChatMessage]"
ANSWER = "The scheme showed a surplus of £27.6 million [1], about £30 million today [2]."


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        server.script(reply=ANSWER, delay=0.01)
        yield server


@pytest.fixture(scope="module")
def app(
    services_env: None, fake: FakeOllama, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    with app_for(fake, tmp_path_factory.mktemp("documents-browser")) as server:
        yield server


@pytest.fixture
def page(app: AppServer, chromium: Any) -> Iterator[Any]:
    empty_tables()
    with database.session_scope() as session:
        accounts.create_user(
            session, username=USER, email="do@example.com", display_name="Dora", password=PASSWORD
        )
    context = b.new_context(chromium)
    tab = b.open_page(context, app.url)
    b.log_in(tab, USER, PASSWORD)
    yield tab
    context.close()


def test_upload_a_pdf_ask_click_a_citation_and_read_the_passage(
    page: Any, fake: FakeOllama, tmp_path: Path
) -> None:
    pdf = filings.build(tmp_path)[filings.ANNUAL]
    b.go(page, "Documents")
    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(pdf))
    page.get_by_text("is ready: 14 page(s)").wait_for(timeout=30_000)
    b.idle(page)
    assert f"{filings.ANNUAL} · 14 page(s) · 14 passages" in b.main_text(page)

    b.go(page, "Chat")
    pickers = page.locator("[data-testid=stSidebar] [data-testid=stMultiSelect]")
    pickers.filter(has_text="Documents in this chat").click()
    page.get_by_role("option", name=filings.ANNUAL).click()
    page.keyboard.press("Escape")
    b.idle(page)
    b.ask(page, "Is the pension scheme in surplus?")
    b.idle(page)
    sent = fake.requests[-1]["messages"][0]["content"]
    assert f'[1] {filings.ANNUAL}, page 11, under "Pensions"' in sent

    reply = page.locator(REPLY).last
    citation = reply.get_by_text(f"[1] {filings.ANNUAL} p. 11 · Pensions")
    excerpt = reply.get_by_text("accounting surplus of £27.6 million", exact=False)
    assert not excerpt.is_visible()  # closed until clicked
    citation.click()
    excerpt.wait_for(state="visible")
    assert "Unverified figures (in none of the excerpts it cites): £30." in reply.inner_text()

    page.reload()  # from history: the same sources, the same warning
    b.idle(page)
    reply = page.locator(REPLY).last
    reply.get_by_text(f"[1] {filings.ANNUAL} p. 11 · Pensions").click()
    reply.get_by_text("accounting surplus of £27.6 million", exact=False).wait_for(state="visible")
    assert "£30" in reply.inner_text()
