"""A new analyst's first visit, in a real browser against the running app.

register -> log in -> ask a finance question -> the reply streams in with its stats caption ->
reload shows the history -> Sessions: find it by a word of the reply, rename, export, delete ->
Usage charts the request (read from each bar's data label) -> log out -> the gate is back.
Then /metrics of that same app process holds exactly that one turn (issue 7's check "metrics
with the right labels and values after one scripted chat turn").

The app runs in its own process (`streamlit run`) against the suite's PostgreSQL and Redis and a
fake Ollama server that streams a scripted reply with small pauses between chunks. The journey
runs once (module fixture) and records what the person saw; each test checks one part.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core import history, services
from tests.support import browser as b
from tests.support.app_server import AppServer, get
from tests.support.fake_ollama import FakeOllama
from tests.support.state import empty_tables

USERNAME, PASSWORD = "nadia.k", "a long enough passphrase"
QUESTION = "What does EBITDA leave out, and why do analysts still use it?"
REPLY = (
    "EBITDA leaves out interest, taxes, depreciation and amortisation. Analysts use it to "
    "compare operating performance across capital structures, but it ignores capex and "
    "working capital, so check free cash flow too."
)
REPLY_WORD = "capex"  # in the reply only, not in the question (the session's title)
MODEL = "llama3.2:3b"
CHUNK_DELAY = 0.04  # seconds between chunks: ~1.2 s of streaming, easily sampled


@dataclass
class Journey:
    """What the analyst saw, step by step."""

    nav_before: list[str] = field(default_factory=list)
    register_notice: str = ""
    nav_after_login: list[str] = field(default_factory=list)
    growth: list[int] = field(default_factory=list)
    streamed_text: str = ""
    caption: str = ""
    session_id: str = ""
    after_reload: list[str] = field(default_factory=list)
    search_page: str = ""
    opened: list[str] = field(default_factory=list)
    renamed_page: str = ""
    export_name: str = ""
    export_text: str = ""
    deleted_page: str = ""
    redis_keys_after_delete: int = -1
    usage_figures: dict[str, str] = field(default_factory=dict)
    chart_marks: int = 0
    chart_bars: dict[str, list[str]] = field(default_factory=dict)  # chart title -> bar labels
    login_form_after_logout: bool = False
    cookie_after_logout: bool = True
    metrics_before: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(
        default_factory=dict
    )
    metrics_after: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)  # the fake server's closing chunk


def scrape(app: AppServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    reply = get(f"{app.url}/metrics")
    assert reply.status == 200 and reply.content_type.startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(reply.text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=[MODEL]) as server:
        server.script(reply=REPLY, delay=CHUNK_DELAY)
        yield server


@pytest.fixture(scope="module")
def app(
    services_env: None, fake: FakeOllama, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    work = tmp_path_factory.mktemp("journey")
    server = AppServer(
        {
            "DATA_DIR": str(work / "data"),
            "LLM_BACKEND": "ollama",
            "OLLAMA_HOST": fake.url,
            "OLLAMA_MODEL": MODEL,
            "LOGIN_SLEEP_TIME": "2",  # lets the cookie component store the cookie
            "ALLOW_REGISTRATION": "true",
        },
        log_path=work / "app.log",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def journey(app: AppServer, fake: FakeOllama, chromium: Any) -> Iterator[Journey]:
    empty_tables()
    seen = Journey(metrics_before=scrape(app))
    context = b.new_context(chromium, accept_downloads=True)
    page = b.open_page(context, app.url)
    try:
        _walk(page, context, app, seen)
    except Exception:
        b.screenshot_full(page, Path(app.log_path).with_name("failure.png"))
        raise
    finally:
        context.close()
    seen.metrics_after = scrape(app)
    seen.reported = fake.finals[-1] if fake.finals else {}
    yield seen


def _walk(page: Any, context: Any, app: AppServer, seen: Journey) -> None:
    seen.nav_before = b.nav(page)

    # Register.
    b.go(page, "Register")
    page.get_by_label("Username", exact=True).fill(USERNAME)
    page.get_by_label("Email", exact=True).fill("nadia@example.com")
    page.get_by_label("Display name", exact=True).fill("Nadia Karim")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password", exact=True).fill(PASSWORD)
    b.click_and_settle(page, page.get_by_role("button", name="Create account"))
    seen.register_notice = b.main_text(page)

    # Log in: the chat page opens.
    b.log_in(page, USERNAME, PASSWORD)
    seen.nav_after_login = b.nav(page)

    # Ask; sample the reply's length while it streams.
    b.ask(page, QUESTION)
    seen.growth = b.sample_reply_growth(page, every=0.05)
    seen.streamed_text = b.last_reply_text(page)
    seen.caption = b.last_reply_caption(page)
    match = re.search(r"[?&]session=([0-9a-f-]{36})", page.url)
    seen.session_id = match.group(1) if match else ""

    # Reload: the cookie keeps the login, the URL keeps the session, the history is back.
    page.reload()
    b.idle(page)
    page.locator(b.MESSAGE).nth(1).wait_for()
    seen.after_reload = [" ".join(t.split()) for t in page.locator(b.MESSAGE).all_inner_texts()]

    # Sessions: search a word of the reply.
    b.go(page, "Sessions")
    search = page.get_by_label("Search titles and messages", exact=True)
    search.fill(REPLY_WORD)
    search.press("Enter")
    page.wait_for_timeout(300)
    b.idle(page)
    seen.search_page = b.main_text(page)

    # Open it from the list.
    b.click_and_settle(page, page.get_by_role("link", name="Open"))
    page.locator(b.MESSAGE).nth(1).wait_for()
    seen.opened = b.page_messages(page)
    b.go(page, "Sessions")
    search = page.get_by_label("Search titles and messages", exact=True)
    search.fill(REPLY_WORD)
    search.press("Enter")
    page.wait_for_timeout(300)
    b.idle(page)

    b.click_and_settle(page, page.get_by_role("button", name="Manage"))
    title = page.get_by_label("Title", exact=True)
    title.fill("EBITDA caveats")
    title.press("Enter")
    page.wait_for_timeout(200)
    b.click_and_settle(page, page.get_by_role("button", name="Rename"))
    seen.renamed_page = b.main_text(page)

    # Export (the manage panel closes after a rename only if the page says so: reopen it).
    if not page.get_by_role("button", name="Export Markdown").count():
        b.click_and_settle(page, page.get_by_role("button", name="Manage"))
    button = page.locator("[data-testid=stDownloadButton] button", has_text="Export Markdown")
    button.wait_for()
    with page.expect_download() as info:
        button.click()
    download = info.value
    seen.export_name = download.suggested_filename
    seen.export_text = Path(download.path()).read_text(encoding="utf-8")

    # Delete, confirmed.
    b.click_and_settle(page, page.get_by_role("button", name="Delete…"))
    b.click_and_settle(page, page.get_by_role("button", name="Yes, delete"))
    seen.deleted_page = b.main_text(page)
    seen.redis_keys_after_delete = int(
        services.redis_client().exists(history.key(uuid.UUID(seen.session_id)))
    )

    # Usage: the request is counted and charted (charts render after the run: wait for them).
    b.go(page, "Usage")
    page.locator(b.CHART).first.wait_for(timeout=15_000)
    deadline = time.monotonic() + 10
    while page.locator(b.CHART).count() < 4 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    seen.chart_marks = page.locator(b.CHART).count()
    seen.chart_bars = b.chart_bars(page)
    seen.usage_figures = b.metric_values(page)

    # Log out: the gate is back, and stays after a reload.
    b.log_out(page)
    page.reload()
    b.idle(page)
    seen.login_form_after_logout = b.login_form_shown(page)
    seen.cookie_after_logout = b.has_cookie(context)


# --- the journey, part by part -------------------------------------------------------------


def test_a_visitor_registers_and_is_asked_to_log_in(journey: Journey) -> None:
    assert journey.nav_before == ["🔑 Login", "📝 Register"]
    assert f"Account {USERNAME} created: log in below." in journey.register_notice.replace("\\", "")
    assert journey.nav_after_login == [
        "💬 Chat",
        "🗂️ Sessions",
        "🧮 Data",
        "📄 Documents",
        "📊 Usage",
        "👤 Account",
    ]


def test_the_reply_streams_in_and_ends_with_its_stats_caption(journey: Journey) -> None:
    seen = [n for n in journey.growth if n > 0]
    assert journey.streamed_text == REPLY
    # The bubble was sampled part-filled several times on the way to the whole reply.
    partial = sorted({n for n in seen if n < len(REPLY)})
    assert len(partial) >= 3, journey.growth
    assert seen == sorted(seen), "the text only grows"
    words = len(REPLY.split(" "))
    assert re.fullmatch(
        rf"{words} tokens · [\d.]+ tokens/s · first token [\d,]+ ms · {re.escape(MODEL)}",
        journey.caption,
    ), journey.caption


def test_a_reload_shows_the_conversation_again(journey: Journey) -> None:
    assert journey.session_id
    assert len(journey.after_reload) == 2
    assert QUESTION in journey.after_reload[0]
    assert REPLY in journey.after_reload[1]


def test_the_session_is_found_by_a_word_of_the_reply(journey: Journey) -> None:
    assert "1 session" in journey.search_page
    assert QUESTION[:40] in journey.search_page  # the title, made from the question
    assert REPLY_WORD in journey.search_page  # the snippet around the match


def test_a_found_session_opens_in_the_chat(journey: Journey) -> None:
    assert journey.opened == [QUESTION, REPLY]


def test_rename_export_and_delete_work_from_the_sessions_page(journey: Journey) -> None:
    assert "Renamed." in journey.renamed_page and "EBITDA caveats" in journey.renamed_page
    assert (
        journey.export_name == f"ledger-ebitda-caveats-{uuid.UUID(journey.session_id).hex[:8]}.md"
    )
    assert "# EBITDA caveats" in journey.export_text
    assert QUESTION in journey.export_text and REPLY in journey.export_text
    assert "Session deleted." in journey.deleted_page
    assert journey.redis_keys_after_delete == 0


def test_the_usage_page_charts_the_new_request(journey: Journey) -> None:
    assert journey.usage_figures["Requests"] == "1"
    assert journey.usage_figures["Error rate"] == "0.0%"
    assert journey.chart_marks >= 4
    # Each bar is labelled with its data (Vega-Lite's ARIA description): the one request,
    # on today's date (UTC), with the tokens the model server reported for it.
    day = f"Day: {datetime.now(UTC):%b %d, %Y}"
    prompt, completion = journey.reported["prompt_eval_count"], journey.reported["eval_count"]
    bars = journey.chart_bars
    (tokens,) = bars["Tokens per day by model"]
    assert tokens.endswith(
        f"{day}; model: {MODEL}; tokens: {prompt + completion}; prompt_tokens: {prompt}; "
        f"completion_tokens: {completion}; requests: 1"
    ), tokens
    assert bars["Requests per day by outcome"] == [
        f"Day (UTC): {day[5:]}; Requests: 1; Outcome: ok; {day}; outcome: ok; requests: 1"
    ]
    # Time to first token: median and p95 of the one request are the caption's figure.
    shown_ttft = re.search(r"first token ([\d,]+) ms", journey.caption)
    assert shown_ttft
    ttft = [
        float(re.search(r"value: ([\d.]+)$", bar).group(1))  # type: ignore[union-attr]
        for bar in bars["Time to first token (ms) per model"]
    ]
    assert len(ttft) == 2 and ttft[0] == ttft[1]
    assert f"{ttft[0]:,.0f}" == shown_ttft.group(1)


def test_logging_out_brings_the_gate_back(journey: Journey) -> None:
    assert journey.login_form_after_logout
    assert not journey.cookie_after_logout


def _delta(seen: Journey, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return seen.metrics_after.get(key, 0.0) - seen.metrics_before.get(key, 0.0)


def test_metrics_of_the_app_count_exactly_that_one_turn(journey: Journey) -> None:
    reported = journey.reported
    assert reported["eval_count"] == len(REPLY.split(" "))
    model = {"model": MODEL}
    after = journey.metrics_after
    assert after[("ledger_llm_requests_total", frozenset(
        {"model": MODEL, "backend": "ollama", "outcome": "ok"}.items()))] == 1  # fmt: skip
    assert _delta(journey, "ledger_llm_requests_total", model=MODEL, backend="ollama",
                  outcome="error") == 0  # fmt: skip
    assert (
        _delta(journey, "ledger_llm_prompt_tokens_total", **model) == reported["prompt_eval_count"]
    )
    assert _delta(journey, "ledger_llm_completion_tokens_total", **model) == reported["eval_count"]
    for histogram in (
        "ledger_llm_time_to_first_token_seconds",
        "ledger_llm_request_duration_seconds",
        "ledger_llm_tokens_per_second",
    ):
        assert _delta(journey, f"{histogram}_count", **model) == 1, histogram
    ttft = _delta(journey, "ledger_llm_time_to_first_token_seconds_sum", **model)
    duration = _delta(journey, "ledger_llm_request_duration_seconds_sum", **model)
    assert 0 < ttft < duration
    assert duration >= CHUNK_DELAY * (reported["eval_count"] - 1)  # it covered the stream
    assert after[("ledger_llm_active_streams", frozenset())] == 0
    assert _delta(journey, "ledger_logins_total", outcome="ok") == 1  # the form; not the cookie
    assert _delta(journey, "ledger_logins_total", outcome="bad_credentials") == 0
    for service in ("postgres", "redis"):
        assert _delta(journey, "ledger_storage_errors_total", service=service) == 0
