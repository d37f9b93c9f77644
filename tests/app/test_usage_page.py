"""The usage page (AppTest): KPIs equal the inserted figures, charts carry the SQL frames,
empty ranges show an empty state, quotas show and can be set by admins."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from core import clock, quota, sessions, usage, usage_log, usage_percentiles
from core.accounts import Identity
from core.config import get_settings
from tests.support.apptest import ROOT, chart_data
from tests.support.people import identity

TODAY = datetime(2026, 4, 10, 15, 0, tzinfo=UTC)
Page = Callable[[str, Identity], AppTest]

# (user, days ago, model, prompt, completion, ttft, duration, outcome)
CALLS = [
    ("ann", 0, "llama3.2:3b", 100, 40, 200.0, 1200.0, "ok"),
    ("ann", 0, "llama3.2:3b", 300, 60, 260.0, 2260.0, "ok"),
    ("ann", 1, "qwen2.5:7b", 500, 0, None, 90.0, "error"),
    ("ann", 3, "qwen2.5:7b", 50, 25, 600.0, 1600.0, "cancelled"),
    ("ann", 45, "llama3.2:3b", 9999, 9999, 1.0, 2.0, "ok"),  # outside the default range
    ("ben", 2, "llama3.2:3b", 1000, 200, 400.0, 4400.0, "ok"),
]


@pytest.fixture
def people(dbs: Session) -> dict[str, Identity]:
    found = {
        "ann": identity(dbs, "ann"),
        "ben": identity(dbs, "ben"),
        "root": identity(dbs, "root", "admin"),
    }
    chats = {
        name: sessions.create(dbs, user_id=found[name].id, title=f"{name}'s analysis")
        for name in ("ann", "ben")
    }
    for name, ago, model, prompt, completion, ttft, duration, outcome in CALLS:
        clock.set_source(lambda ago=ago: TODAY - timedelta(days=ago, hours=1))
        usage_log.record_call(
            dbs,
            user_id=found[name].id,
            session_id=chats[name].id,
            model=model,
            backend="ollama",
            prompt_tokens=prompt,
            completion_tokens=completion,
            ttft_ms=ttft,
            duration_ms=duration,
            outcome=outcome,
        )
    dbs.commit()
    clock.set_source(lambda: TODAY)
    return found


@pytest.fixture
def quota_setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DAILY_TOKEN_QUOTA", "1000")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("DAILY_TOKEN_QUOTA")
    get_settings.cache_clear()


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_kpis_equal_the_inserted_figures(page: Page, people: dict[str, Identity]) -> None:
    at = page("usage", people["ann"]).run()
    assert not at.exception and not at.error
    recent = [c for c in CALLS if c[0] == "ann" and c[1] < 30]
    shown = metrics(at)
    assert shown["Requests"] == f"{len(recent):,}"
    assert shown["Prompt tokens"] == f"{sum(c[3] for c in recent):,}"
    assert shown["Completion tokens"] == f"{sum(c[4] for c in recent):,}"
    median = np.median([c[5] for c in recent if c[5] is not None])  # 200, 260, 600 -> 260
    assert shown["Median time to first token"] == f"{median:,.0f} ms" == "260 ms"
    assert shown["Error rate"] == "25.0%"
    assert {m.label: m.delta for m in at.metric}["Error rate"] == "1 error"


def test_charts_show_the_frames_computed_in_sql(page: Page, people: dict[str, Identity]) -> None:
    at = page("usage", people["ann"]).run()
    charts = chart_data(at)
    assert set(charts) == {
        "Tokens per day by model",
        "Requests per day by outcome",
        "Time to first token (ms) per model",
        "Tokens per second per model",
        "Top sessions by tokens",
    }
    tokens = charts["Tokens per day by model"]
    got = {
        (d.date(), m): t
        for d, m, t in zip(tokens["day"], tokens["model"], tokens["tokens"], strict=True)
    }
    day = TODAY.date()
    assert got == {
        (day, "llama3.2:3b"): 500,
        (day - timedelta(days=1), "qwen2.5:7b"): 500,
        (day - timedelta(days=3), "qwen2.5:7b"): 75,
    }
    outcomes = charts["Requests per day by outcome"]
    assert sorted(zip(outcomes["outcome"], outcomes["requests"], strict=True)) == [
        ("cancelled", 1),
        ("error", 1),
        ("ok", 2),
    ]
    ttft = charts["Time to first token (ms) per model"].set_index(["model", "stat"])["value"]
    assert ttft[("llama3.2:3b", "median")] == pytest.approx(230.0)
    assert ttft[("llama3.2:3b", "p95")] == pytest.approx(np.percentile([200.0, 260.0], 95))
    speed = charts["Tokens per second per model"].set_index(["model", "stat"])["value"]
    assert speed[("llama3.2:3b", "median")] == pytest.approx(np.median([40 / 1.0, 60 / 2.0]))
    top = charts["Top sessions by tokens"]
    assert list(top["title"]) == ["ann's analysis"] and list(top["tokens"]) == [1075]


def test_an_empty_range_shows_an_empty_state(page: Page, people: dict[str, Identity]) -> None:
    at = page("usage", people["ann"]).run()
    at.date_input(key="dates").set_value((date(2025, 1, 1), date(2025, 1, 31))).run()
    assert not at.exception and not at.error
    assert [i.value for i in at.info] == [
        "No requests between 2025-01-01 and 2025-01-31. Try a wider range."
    ]
    assert not at.get("vega_lite_chart")


def test_start_after_end_shows_the_reason(page: Page, people: dict[str, Identity]) -> None:
    at = page("usage", people["ann"]).run()
    at.date_input(key="dates").set_value((date(2026, 4, 9), date(2026, 4, 1))).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "The start date (2026-04-09) is after the end date (2026-04-01); "
        "choose a start on or before the end."
    ]
    assert not at.get("vega_lite_chart") and "Requests" not in metrics(at)


def test_a_wider_range_includes_older_calls(page: Page, people: dict[str, Identity]) -> None:
    at = page("usage", people["ann"]).run()
    at.date_input(key="dates").set_value((date(2026, 1, 1), date(2026, 4, 10))).run()
    assert metrics(at)["Requests"] == "5"


def test_quota_used_and_remaining_today(
    page: Page, people: dict[str, Identity], quota_setting: None
) -> None:
    at = page("usage", people["ann"]).run()
    shown = metrics(at)
    assert shown["Tokens used today"] == "500"
    assert shown["Remaining today"] == "500"
    assert not at.get("expander") or all("quota" not in e.label for e in at.expander)


def test_admin_sees_everyone_then_one_user_and_sets_their_quota(
    page: Page, people: dict[str, Identity], dbs: Session
) -> None:
    at = page("usage", people["root"]).run()
    assert metrics(at)["Requests"] == "5"  # an administrator opens on everyone
    assert "Tokens used today" not in metrics(at)  # no quota for "everyone"
    at.selectbox[0].set_value(people["root"].id).run()
    assert [i.value for i in at.info][-1].startswith("No requests between")  # root has none
    at.selectbox[0].set_value(people["ben"].id).run()
    assert metrics(at)["Requests"] == "1"
    assert metrics(at)["Remaining today"] == "unlimited"
    assert not at.number_input  # the default applies: no number to type that would be ignored
    at.radio[0].set_value("Its own quota").run()
    at.number_input[0].set_value(5000).run()
    at.button[0].click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Quota saved: 5,000 tokens a day (own quota)."]
    assert quota.daily_quota(dbs, user_id=people["ben"].id) == 5000
    assert metrics(at)["Remaining today"] == "5,000"
    at.radio[0].set_value("The default (DAILY_TOKEN_QUOTA)").run()
    at.button[0].click().run()
    assert [s.value for s in at.success] == ["Quota saved: the default, unlimited."]
    assert metrics(at)["Remaining today"] == "unlimited"


def test_an_analyst_cannot_pick_other_users(page: Page, people: dict[str, Identity]) -> None:
    at = page("usage", people["ben"]).run()
    assert not at.selectbox
    assert metrics(at)["Requests"] == "1"


def test_unknown_identity_is_asked_to_log_in(services_env: None) -> None:
    from tests.support.apptest import ROOT

    at = AppTest.from_file(str(ROOT / "pages" / "usage.py")).run()
    assert [w.value for w in at.warning] == ["Please log in."]
    assert not at.metric


ESTIMATED = "Percentiles over all users are estimated from 1 % histogram buckets."


def test_everyones_percentiles_over_the_exact_limit_are_marked_estimated(
    page: Page, people: dict[str, Identity], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Everyone's default range holds 5 requests: at the limit they are exact, above it estimated.
    monkeypatch.setattr(usage_percentiles, "EXACT_PERCENTILE_ROWS", 5)
    at = page("usage", people["root"]).run()
    at.selectbox[0].set_value("all").run()
    assert metrics(at)["Requests"] == "5"
    assert ESTIMATED not in [c.value for c in at.caption]
    monkeypatch.setattr(usage_percentiles, "EXACT_PERCENTILE_ROWS", 4)
    at.run()
    assert not at.exception
    assert ESTIMATED in [c.value for c in at.caption]
    exact = np.median([200.0, 260.0, 600.0, 400.0])  # every first token in the range: 330 ms
    shown = float(metrics(at)["Median time to first token"].removesuffix(" ms"))
    assert shown == pytest.approx(exact, rel=0.01)  # within one 1 % bucket
    at.selectbox[0].set_value(people["ann"].id).run()  # one user's are always exact
    assert ESTIMATED not in [c.value for c in at.caption]


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL sent to PostgreSQL meanwhile, in order."""
    from sqlalchemy import event

    from core import database

    sent: list[str] = []
    engine = database.get_engine()

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def usage_benchmark() -> Any:
    spec = importlib.util.spec_from_file_location(
        "usage_queries", ROOT / "benchmarks" / "usage_queries.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("whose", ["all", "ben"])
def test_the_usage_benchmark_times_exactly_what_one_render_of_the_page_runs(
    page: Page, people: dict[str, Identity], whose: str
) -> None:
    scope = None if whose == "all" else people[whose].id
    at = page("usage", people["root"]).run()
    with statements() as rendered:
        at.selectbox[0].set_value("all" if scope is None else scope).run()
    assert not at.exception and metrics(at)["Requests"]
    with statements() as timed:
        _, board = usage_benchmark().page_render(
            None, viewer=people["root"], scope=scope, rng=usage.last_days(30)
        )
    assert not board.empty
    assert len(rendered) >= 5 and timed == rendered
