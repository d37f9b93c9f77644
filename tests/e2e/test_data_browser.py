"""Ask your data in a real browser: drop a CSV on the Data page, attach it to a chat, ask, and
see the model's query as a tool card with its result table and chart, in the reply and again
from history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import accounts, database
from tests.support import browser as b
from tests.support.app_server import AppServer, app_for
from tests.support.fake_ollama import FakeOllama
from tests.support.state import empty_tables

USER, PASSWORD = "dana", "a passphrase for dana"
SAMPLE = Path(__file__).resolve().parents[2] / "notebooks" / "samples" / "revenue.csv"
SQL = "SELECT year, sum(revenue) AS revenue FROM revenue GROUP BY year ORDER BY year"
REPLY = "[data-testid=stChatMessage]"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        server.script(
            tool_calls=[{"name": "run_sql", "arguments": {"query": SQL}}],
            reply="Revenue rose from 200 in 2019 to 315 in 2024.",
            delay=0.01,
        )
        yield server


@pytest.fixture(scope="module")
def app(
    services_env: None, fake: FakeOllama, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    with app_for(fake, tmp_path_factory.mktemp("data-browser")) as server:
        yield server


@pytest.fixture
def page(app: AppServer, chromium: Any) -> Iterator[Any]:
    empty_tables()
    with database.session_scope() as session:
        accounts.create_user(
            session, username=USER, email="d@example.com", display_name="Dana", password=PASSWORD
        )
    context = b.new_context(chromium)
    tab = b.open_page(context, app.url)
    b.log_in(tab, USER, PASSWORD)
    yield tab
    context.close()


def test_upload_a_csv_ask_and_see_the_query_its_table_and_chart(page: Any) -> None:
    b.go(page, "Data")
    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(SAMPLE))
    page.get_by_text("is now table").wait_for()
    b.idle(page)
    assert "revenue.csv is now table revenue: 12 rows, 4 columns." in b.main_text(page)

    b.go(page, "Chat")
    picker = page.locator("[data-testid=stSidebar] [data-testid=stMultiSelect]").filter(
        has_text="Tables in this chat"
    )
    picker.click()
    page.get_by_role("option", name="revenue").click()
    page.keyboard.press("Escape")
    b.idle(page)
    b.ask(page, "How did revenue grow?")
    b.sample_reply_growth(page)
    card = page.locator(REPLY).last  # the reply: its tool card, then its text
    assert "🔧 SQL over revenue" in card.inner_text()
    assert "SELECT year, SUM(revenue) AS revenue FROM revenue" in card.locator("code").inner_text()
    card.locator("[data-testid=stDataFrame]").wait_for()
    card.locator("[data-testid=stVegaLiteChart] svg.marks").wait_for()
    assert "Revenue rose from 200 in 2019 to 315 in 2024." in b.page_messages(page)[-1]

    page.reload()  # from history: the same card, table and chart
    b.idle(page)
    card = page.locator(REPLY).last
    card.locator("[data-testid=stVegaLiteChart] svg.marks").wait_for()
    assert "🔧 SQL over revenue" in card.inner_text()
    card.locator("[data-testid=stDataFrame]").wait_for()
