"""Driving the running app in Debian's headless Chromium (Playwright), shared by the browser
tests, `make screenshots` and the benchmarks.

What held on Streamlit 1.67 (see /work/shared/STACK-FACTS.md): the app is idle when
``[data-testid=stApp]`` says ``data-test-script-state=notRunning``, no status widget shows and
nothing is stale, for ~400 ms (short follow-up reruns come after a login); the document does
not scroll, ``stMain`` does, so a full-page screenshot first grows the viewport to its height.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("LEDGER_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1280, "height": 900}

CHAT_INPUT = "textarea[data-testid=stChatInputTextArea]"
MESSAGE = "[data-testid=stChatMessage]"
ASSISTANT_TEXT = "[data-testid=stChatMessageContent] [data-testid=stMarkdownContainer]"
CAPTION = "[data-testid=stCaptionContainer]"
CHART = "[data-testid=stVegaLiteChart] svg.marks"
ERROR = "[data-testid=stAlertContentError]"
WARNING = "[data-testid=stAlertContentWarning]"
MAIN = "[data-testid=stMainBlockContainer]"  # the page's content, with or without a chat input

_IDLE_JS = """() => {
  const app = document.querySelector('[data-testid=stApp]');
  return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
    && app.getAttribute('data-test-connection-state') === 'CONNECTED'
    && !document.querySelector('[data-testid=stStatusWidget]')
    && !document.querySelector('[data-stale=true]');
}"""


def unavailable_reason() -> str | None:
    """Why the browser tests cannot run on this machine, or None when they can."""
    if not Path(CHROMIUM).exists():
        return (
            f"Debian's Chromium is not installed at {CHROMIUM} "
            "(`make test` installs it when run as root with apt-get: apt-get install -y chromium)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (make install)"
    return None


def emoji_font_installed() -> bool:
    """Page icons are emoji: without an emoji font Chromium draws them as boxes."""
    return Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf").exists()


@contextmanager
def chromium() -> Iterator[Any]:
    """One headless Chromium for the block (contexts are cheap, browsers are not)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser: Any, **kwargs: Any) -> Any:
    return browser.new_context(viewport=VIEWPORT, **kwargs)


def is_idle(page: Any) -> bool:
    return bool(page.evaluate(_IDLE_JS))


def idle(page: Any, hold: float = 0.4, timeout: float = 30.0) -> None:
    """Wait until the script has stopped running and stayed stopped for ``hold`` seconds."""
    deadline, since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if is_idle(page):
            since = since or time.monotonic()
            if time.monotonic() - since >= hold:
                return
        else:
            since = None
        time.sleep(0.05)  # polling the page's state, not waiting for time to pass
    raise TimeoutError(f"the app did not settle within {timeout:g} s on {page.url}")


def open_page(context: Any, url: str) -> Any:
    page = context.new_page()
    page.goto(url)
    idle(page)
    return page


def click_and_settle(page: Any, locator: Any) -> None:
    """Click, let the rerun start (the state flips to running a moment later), then settle."""
    locator.click()
    page.wait_for_timeout(300)
    idle(page)


def log_in(page: Any, username: str, password: str) -> None:
    """Fill in the login form and press Login. When it signs in, wait until the page has run
    for the new cookie too (the cookie component reports it and the page runs once more): a
    prompt typed during that run would be taken by a run the next one cuts short."""
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    click_and_settle(page, page.get_by_role("button", name="Login"))
    if page.get_by_text("Signed in as").count():
        idle(page, hold=1.0)


def log_out(page: Any) -> None:
    """Press Logout and wait for its outcome, the login form: on a loaded machine the rerun
    can start after click_and_settle's pause, which would return before the logout happened.
    Right after a login the gate may still be running: Logout is pressed once it has settled."""
    page.get_by_text("Signed in as").wait_for(timeout=30_000)
    idle(page)
    click_and_settle(page, page.get_by_role("button", name="Logout"))
    page.get_by_label("Password", exact=True).wait_for(timeout=30_000)


def login_form_shown(page: Any) -> bool:
    """Whether the gate shows the login form. Waits until the gate has decided (the form, or
    the sidebar's "Signed in as"), so a page still checking its cookie is not read as either."""
    form = page.get_by_label("Password", exact=True)
    form.or_(page.get_by_text("Signed in as")).first.wait_for(timeout=30_000)
    return bool(form.count() > 0)


def has_cookie(context: Any, name: str = "ledger_auth") -> bool:
    """Whether the browser holds a login cookie: one with a login in it. After Logout the
    cookie stays, holding only the browser's device part (core.cookies), which is no login."""
    import base64
    import json

    for cookie in context.cookies():
        if cookie["name"] != name:
            continue
        payload = cookie["value"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if "uid" in claims:
            return True
    return False


def nav(page: Any) -> list[str]:
    """The sidebar's page links as shown ("💬 Chat")."""
    texts = page.locator("[data-testid=stSidebarNav] a").all_inner_texts()
    return [" ".join(t.split()) for t in texts]


def go(page: Any, title: str) -> None:
    """Open a page through its sidebar link."""
    click_and_settle(page, page.locator("[data-testid=stSidebarNav] a", has_text=title))


def main_text(page: Any) -> str:
    return str(page.inner_text(MAIN))


def metric_values(page: Any) -> dict[str, str]:
    """The st.metric figures on the page, by label."""
    return dict(
        page.evaluate(
            """() => [...document.querySelectorAll('[data-testid=stMetric]')].map(m => [
                 m.querySelector('[data-testid=stMetricLabel]').innerText.trim(),
                 m.querySelector('[data-testid=stMetricValue]').innerText.trim()])"""
        )
    )


def chart_bars(page: Any) -> dict[str, list[str]]:
    """Each Vega-Lite chart's bars, by chart title: the label Vega-Lite gives every bar for
    screen readers ("Day: Dec 02, 2026; outcome: ok; requests: 1"), which carries the data
    the page sent for it."""
    return dict(
        page.evaluate(
            """() => [...document.querySelectorAll('[data-testid=stVegaLiteChart]')].map(c => {
                 const title = c.querySelector('[aria-roledescription=title]');
                 const name = title ? title.getAttribute('aria-label')
                   .replace(/^Title text '(.*)'$/, '$1') : '';
                 return [name, [...c.querySelectorAll('[aria-roledescription=bar]')]
                   .map(e => e.getAttribute('aria-label'))];
               })"""
        )
    )


def ask(page: Any, prompt: str) -> None:
    """Type a prompt in the chat input and press Enter (does not wait)."""
    box = page.locator(CHAT_INPUT)
    box.fill(prompt)
    box.press("Enter")


REPLY_JS = """() => {
  const msgs = [...document.querySelectorAll('[data-testid=stChatMessage]')]
    .filter(m => m.querySelector('[data-testid=stChatMessageAvatarAssistant]'));
  const last = msgs[msgs.length - 1];
  if (!last) return '';
  const text = [...last.querySelectorAll('[data-testid=stMarkdown]')].find(
    e => !e.closest('[data-testid=stAlert]') && !e.querySelector('[data-testid=stCaptionContainer]'));
  return text ? text.innerText : '';
}"""


def last_reply_text(page: Any) -> str:
    """The streamed text of the last assistant bubble ('' before the first chunk). The Stop
    button's label, notes and the stats caption are not part of it."""
    return str(page.evaluate(REPLY_JS))


def page_messages(page: Any) -> list[str]:
    """The text of every chat message on the page, oldest first (no captions, buttons or
    notes)."""
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('[data-testid=stChatMessage]')].map(m => {
                 const t = [...m.querySelectorAll('[data-testid=stMarkdown]')].find(e =>
                   !e.closest('[data-testid=stAlert]')
                   && !e.querySelector('[data-testid=stCaptionContainer]'));
                 return t ? t.innerText : ''; })"""
        )
    )


def last_reply_caption(page: Any) -> str:
    return str(
        page.evaluate(
            """() => {
              const msgs = [...document.querySelectorAll('[data-testid=stChatMessage]')];
              const last = msgs[msgs.length - 1];
              const cap = last && last.querySelector('[data-testid=stCaptionContainer]');
              return cap ? cap.innerText : '';
            }"""
        )
    )


def sample_reply_growth(page: Any, *, every: float = 0.05, timeout: float = 30.0) -> list[int]:
    """Lengths of the last assistant bubble's text, sampled every ``every`` s until the run
    has settled (the reply is whole)."""
    lengths: list[int] = []
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        lengths.append(len(last_reply_text(page)))
        if is_idle(page) and lengths[-1] > 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 0.4:
                return lengths
        else:
            quiet_since = None
        time.sleep(every)  # the sampling period itself
    raise TimeoutError("the reply did not finish streaming")


def screenshot_full(page: Any, path: Path) -> Path:
    """A PNG of the whole page: the viewport grows to the scrolling area's height first
    (stMain; on a page with a chat input, the scroll-to-bottom container)."""
    height = int(
        page.evaluate(
            """() => Math.max(document.body.scrollHeight, ...[
                 '[data-testid=stMain]', '[data-testid=stAppScrollToBottomContainer]'
               ].map(s => { const e = document.querySelector(s); return e ? e.scrollHeight : 0; }))"""
        )
    )
    width = page.viewport_size["width"] if page.viewport_size else VIEWPORT["width"]
    page.set_viewport_size({"width": width, "height": max(VIEWPORT["height"], height)})
    page.wait_for_timeout(400)  # layout after the resize (charts re-measure their width)
    idle(page)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": width, "height": VIEWPORT["height"]})
    return path
