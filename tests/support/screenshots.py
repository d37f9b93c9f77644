"""Screenshots of every page for the README: ``make screenshots`` (or
``python -m tests.support.screenshots docs/screenshots``).

Everything runs from a temporary folder and is removed afterwards: embedded PostgreSQL and
Redis with demo data (core.demo, fixed seed), a fake Ollama server that streams a finance
reply, the app (`streamlit run`), and headless Chromium. Pages are captured whole (the
viewport grows to the main area's height). Without an emoji font (Debian:
fonts-noto-color-emoji) the page icons show as boxes: the script says so.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support import browser as b
from tests.support.app_server import ROOT, AppServer
from tests.support.fake_ollama import FakeOllama

PASSWORD = "screenshots only 1"
ANALYST = "maria.lopez"
MODEL = "llama3.2:3b"
QUESTION = "Compare free cash flow for FY2024 and FY2025 and tell me what drove the change."
REPLY = (
    "**Free cash flow** (FCF) is operating cash flow minus capital expenditure.\n\n"
    "| USD m | FY2024 | FY2025 | change |\n"
    "|---|---:|---:|---:|\n"
    "| Operating cash flow | 412 | 468 | +13.6 % |\n"
    "| Capital expenditure | (120) | (135) | +12.5 % |\n"
    "| **Free cash flow** | **292** | **333** | **+14.0 %** |\n\n"
    "FCF grew faster than capex, so the improvement came from operations (higher margins and "
    "lower working capital), not from cutting investment. Check whether the working-capital "
    "release repeats before extrapolating it."
)


def seed(data_dir: Path) -> None:
    """Demo analysts with 60 days of sessions and usage; the first one is an administrator."""
    os.environ["DATA_DIR"] = str(data_dir)
    from core import database, demo, migrate, services
    from core.accounts import get_by_username
    from core.config import get_settings

    get_settings.cache_clear()
    migrate.upgrade(database.get_engine())
    with database.session_scope() as session:
        demo.seed(
            session,
            services.redis_client(),
            users=4,
            sessions_per_user=40,
            password=PASSWORD,
            random_seed=2026,
        )
        user = get_by_username(session, username=ANALYST)
        assert user is not None
        user.role = "admin"


def a_session_of(username: str) -> str:
    """The id of one of the user's sessions with a short history (a conversation to extend)."""
    from core import database, sessions
    from core.accounts import get_by_username

    with database.session_scope() as session:
        user = get_by_username(session, username=username)
        assert user is not None
        rows = sessions.list_for_owner(session, user_id=user.id, limit=50)
        row = min(rows, key=lambda r: (r.message_count != 2, r.message_count))
        return str(row.id)


def capture(page: Any, out: Path, name: str) -> None:
    path = b.screenshot_full(page, out / f"{name}.png")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


SECOND = "qwen2.5:7b"
RATIO_QUESTION = "Is a current ratio of 0.8 a problem for a retailer?"
RATIO_REPLIES = {
    MODEL: (
        "A **current ratio of 0.8** means current liabilities exceed current assets: for every "
        "1.00 owed within a year there is 0.80 of short-term assets.\n\nFor a retailer this is "
        "often normal: stock turns fast, customers pay at once and suppliers are paid on 60-90 "
        "day terms. Check the **cash conversion cycle** and the trend before calling it a problem."
    ),
    SECOND: (
        "Not necessarily. Retailers such as grocers run **negative working capital**: they sell "
        "inventory for cash before paying suppliers.\n\n- Compare with peers (0.7-0.9 is common)\n"
        "- Watch the quick ratio and undrawn credit lines\n- Worry if it falls year after year."
    ),
}


def shoot(app: AppServer, out: Path, session_id: str, fake: FakeOllama) -> None:
    with b.chromium() as chromium:
        visitor = b.new_context(chromium)
        page = b.open_page(visitor, app.url)
        capture(page, out, "login")
        b.go(page, "Register")
        capture(page, out, "register")
        visitor.close()

        context = b.new_context(chromium)
        page = b.open_page(context, app.url)
        b.log_in(page, ANALYST, PASSWORD)
        page.goto(f"{app.url}/?session={session_id}")  # Chat is the home page: at /
        b.idle(page)
        b.ask(page, QUESTION)
        b.sample_reply_growth(page)
        capture(page, out, "chat")
        fake.script(replies=RATIO_REPLIES, delay=0.01)
        b.click_and_settle(page, page.get_by_role("button", name="New chat"))
        b.click_and_settle(page, page.get_by_text("Compare two models"))
        b.ask(page, RATIO_QUESTION)
        page.wait_for_timeout(300)
        b.idle(page)
        capture(page, out, "compare")
        fake.script(reply=REPLY, delay=0.01)
        b.go(page, "Sessions")
        search = page.get_by_label("Search titles and messages", exact=True)
        search.fill("working capital")
        search.press("Enter")
        page.wait_for_timeout(300)
        b.idle(page)
        capture(page, out, "sessions")
        for title in ("Account", "Admin"):
            b.go(page, title)
            capture(page, out, title.lower())
        b.go(page, "Usage")
        page.locator(b.CHART).nth(3).wait_for(timeout=20_000)
        capture(page, out, "usage")
        context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    reason = b.unavailable_reason()
    if reason:
        print(f"error: cannot take screenshots: {reason}", file=sys.stderr)
        return 2
    if not b.emoji_font_installed():
        print(
            "warning: no emoji font (Debian: apt-get install fonts-noto-color-emoji): "
            "page icons will show as boxes",
            file=sys.stderr,
        )
    work = Path(tempfile.mkdtemp(prefix="ledger-screenshots-"))
    for name in list(os.environ):
        if name.startswith(("DATABASE_URL", "REDIS_URL", "OLLAMA_", "LLM_")):
            del os.environ[name]
    os.environ["AUTH_COOKIE_KEY"] = secrets.token_urlsafe(48)
    os.environ["BCRYPT_ROUNDS"] = "4"
    app: AppServer | None = None
    try:
        with FakeOllama(models=[MODEL, "qwen2.5:7b"]) as fake:
            fake.script(reply=REPLY, delay=0.01)
            seed(work / "data")
            session_id = a_session_of(ANALYST)
            app = AppServer(
                {
                    "LLM_BACKEND": "ollama",
                    "OLLAMA_HOST": fake.url,
                    "OLLAMA_MODEL": MODEL,
                    "LOGIN_SLEEP_TIME": "2",
                },
                log_path=work / "app.log",
            )
            app.start()
            args.out.mkdir(parents=True, exist_ok=True)
            shoot(app, args.out.resolve(), session_id, fake)
    finally:
        if app is not None:
            app.stop()
        from core import database, services

        database.reset()
        services.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
