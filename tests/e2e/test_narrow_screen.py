"""On a 390 px screen the sidebar opens over the page; choosing a page must close it again,
or it hides the page just opened. On a wide screen it stays where it is."""

from __future__ import annotations

from typing import Any

from tests.support.browser import click_and_settle, idle, log_in, open_page

PASSWORD = "correct horse battery"
SIDEBAR = '[data-testid="stSidebar"]'


def sidebar_open(page: Any) -> bool:
    box = page.locator(SIDEBAR).bounding_box()
    return box is not None and box["x"] >= 0 and box["width"] > 0


def choose_sessions_from_the_sidebar(chromium: Any, app_url: str, width: int) -> Any:
    # A desktop browser's user agent: Streamlit itself closes the sidebar only for phones.
    context = chromium.new_context(viewport={"width": width, "height": 844})
    page = open_page(context, app_url)
    log_in(page, "alice", PASSWORD)
    if not sidebar_open(page):
        click_and_settle(page, page.locator('[data-testid="stExpandSidebarButton"]'))
    assert sidebar_open(page)
    click_and_settle(page, page.locator("[data-testid=stSidebarNav] a", has_text="Sessions"))
    idle(page)
    assert page.locator("h1").first.inner_text().strip() == "Sessions"
    return page


def test_on_a_390_px_screen_choosing_a_page_closes_the_sidebar(
    app_url: str, chromium: Any, alice: None
) -> None:
    page = choose_sessions_from_the_sidebar(chromium, app_url, 390)
    page.wait_for_function(
        f"() => document.querySelector('{SIDEBAR}').getBoundingClientRect().right <= 0",
        timeout=5000,
    )
    assert not sidebar_open(page)
    page.context.close()


def test_on_a_wide_screen_the_sidebar_stays_open(app_url: str, chromium: Any, alice: None) -> None:
    page = choose_sessions_from_the_sidebar(chromium, app_url, 1280)
    assert sidebar_open(page)
    page.context.close()
