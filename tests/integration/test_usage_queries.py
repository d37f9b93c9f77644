"""core.usage queries on real PostgreSQL, against known rows, with exact expected figures.

Expected percentiles are computed here with numpy's linear interpolation, which is what
PostgreSQL's percentile_cont does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import redis
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core import clock, sessions, usage, usage_log, usage_percentiles, usage_query
from core.errors import InvalidInput
from core.models import LlmCall, UsageDaily, UsageLatencyHistogram
from tests.support.people import make_user as new_user

D1, D2, D3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 5)


@dataclass(frozen=True)
class Call:
    user: str
    session: str | None
    model: str
    day: date
    prompt: int
    completion: int
    ttft: float | None
    duration: float
    outcome: str = "ok"
    minute: int = 0


# alice: two sessions; bob: one session and a call without session. D3 is outside most ranges.
CALLS = [
    Call("alice", "s1", "m-a", D1, 100, 50, 200.0, 1200.0),
    Call("alice", "s1", "m-a", D1, 120, 80, 300.0, 2300.0, minute=5),
    Call("alice", "s1", "m-b", D1, 90, 0, None, 50.0, "error", minute=9),
    Call("alice", "s2", "m-a", D2, 300, 200, 150.0, 4150.0),
    Call("alice", "s2", "m-a", D2, 310, 10, 180.0, 680.0, "cancelled", minute=3),
    Call("alice", "s2", "m-b", D2, 50, 40, 500.0, 1500.0, minute=7),
    Call("bob", "s3", "m-a", D1, 1000, 400, 250.0, 8250.0),
    Call("bob", "s3", "m-b", D2, 700, 300, 450.0, 3450.0),
    Call("bob", None, "m-b", D2, 20, 10, 600.0, 1100.0, minute=30),
    Call("alice", "s1", "m-a", D3, 999, 999, 999.0, 9999.0),
]


@dataclass
class Seeded:
    users: dict[str, uuid.UUID]
    sessions: dict[str, uuid.UUID]


def make_user(dbs: Session, name: str, role: str = "user") -> uuid.UUID:
    return new_user(dbs, name, role).id


def at(day: date, minute: int = 0, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def record(dbs: Session, seeded: Seeded, call: Call) -> None:
    clock.set_source(lambda: at(call.day, call.minute))
    usage_log.record_call(
        dbs,
        user_id=seeded.users[call.user],
        session_id=seeded.sessions[call.session] if call.session else None,
        model=call.model,
        backend="ollama",
        prompt_tokens=call.prompt,
        completion_tokens=call.completion,
        ttft_ms=call.ttft,
        duration_ms=call.duration,
        outcome=call.outcome,
        error="boom" if call.outcome == "error" else None,
    )


@pytest.fixture
def seeded(dbs: Session) -> Seeded:
    users = {"alice": make_user(dbs, "alice"), "bob": make_user(dbs, "bob")}
    made = {
        "s1": sessions.create(dbs, user_id=users["alice"], title="Q3 revenue"),
        "s2": sessions.create(dbs, user_id=users["alice"], title="EBITDA bridge"),
        "s3": sessions.create(dbs, user_id=users["bob"], title="FX exposure"),
    }
    result = Seeded(users, {k: v.id for k, v in made.items()})
    for call in CALLS:
        record(dbs, result, call)
    dbs.commit()
    clock.set_source(lambda: at(D2, 0, hour=23))
    return result


def picked(user: str | None, days: tuple[date, ...] = (D1, D2)) -> list[Call]:
    return [c for c in CALLS if (user is None or c.user == user) and c.day in days]


def tps(c: Call) -> float | None:
    if c.outcome != "ok" or c.completion <= 0 or c.ttft is None or c.duration <= c.ttft:
        return None
    return c.completion * 1000.0 / (c.duration - c.ttft)


def pct(values: list[float | None], q: float) -> float:
    return float(np.percentile([v for v in values if v is not None], q * 100))


# --- KPIs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "bob", None])
def test_kpis_are_the_exact_sums_counts_median_and_error_rate(
    dbs: Session, seeded: Seeded, who: str | None
) -> None:
    uid = seeded.users[who] if who else None
    frame = usage.kpis(dbs, user_id=uid, start=D1, end=D2)
    calls = picked(who)
    row = frame.iloc[0]
    assert len(frame) == 1
    assert row["requests"] == len(calls)
    assert row["prompt_tokens"] == sum(c.prompt for c in calls)
    assert row["completion_tokens"] == sum(c.completion for c in calls)
    assert row["total_tokens"] == sum(c.prompt + c.completion for c in calls)
    errors = sum(c.outcome == "error" for c in calls)
    assert row["errors"] == errors
    assert row["cancelled"] == sum(c.outcome == "cancelled" for c in calls)
    assert row["error_rate"] == pytest.approx(errors / len(calls), abs=1e-12)
    assert row["median_ttft_ms"] == pytest.approx(pct([c.ttft for c in calls], 0.5), abs=1e-9)
    assert bool(row["percentiles_exact"]) is True


def test_kpis_for_alice_match_hand_computed_figures(dbs: Session, seeded: Seeded) -> None:
    row = usage.kpis(dbs, user_id=seeded.users["alice"], start=D1, end=D2).iloc[0]
    # 6 calls; prompt 100+120+90+300+310+50; ttft {200,300,150,180,500} -> median 200
    assert (row["requests"], row["prompt_tokens"], row["completion_tokens"]) == (6, 970, 380)
    assert row["median_ttft_ms"] == 200.0
    assert row["error_rate"] == pytest.approx(1 / 6)


def test_range_end_day_is_included_and_days_are_utc(dbs: Session, seeded: Seeded) -> None:
    alice = seeded.users["alice"]
    clock.set_source(lambda: datetime(2026, 3, 3, 23, 59, 59, 999999, tzinfo=UTC))
    usage_log.record_call(
        dbs,
        user_id=alice,
        session_id=None,
        model="m-a",
        backend="ollama",
        prompt_tokens=7,
        completion_tokens=0,
        ttft_ms=None,
        duration_ms=1,
        outcome="ok",
    )
    clock.set_source(lambda: datetime(2026, 3, 4, 0, 0, tzinfo=UTC))
    usage_log.record_call(
        dbs,
        user_id=alice,
        session_id=None,
        model="m-a",
        backend="ollama",
        prompt_tokens=11,
        completion_tokens=0,
        ttft_ms=None,
        duration_ms=1,
        outcome="ok",
    )
    dbs.flush()
    only_3rd = usage.kpis(dbs, user_id=alice, start=date(2026, 3, 3), end=date(2026, 3, 3))
    only_4th = usage.kpis(dbs, user_id=alice, start=date(2026, 3, 4), end=date(2026, 3, 4))
    assert only_3rd.iloc[0]["prompt_tokens"] == 7
    assert only_4th.iloc[0]["prompt_tokens"] == 11


# --- per day ---------------------------------------------------------------------------------


def test_tokens_per_day_by_model_for_everyone(dbs: Session, seeded: Seeded) -> None:
    frame = usage.tokens_per_day(dbs, user_id=None, start=D1, end=D3)
    got = {
        (r.day.date(), r.model): (r.requests, r.prompt_tokens, r.completion_tokens, r.tokens)
        for r in frame.itertuples()
    }
    expected: dict[tuple[date, str], tuple[int, int, int, int]] = {}
    for c in CALLS:
        n, p, k, t = expected.get((c.day, c.model), (0, 0, 0, 0))
        expected[(c.day, c.model)] = (
            n + 1,
            p + c.prompt,
            k + c.completion,
            t + c.prompt + c.completion,
        )
    assert got == expected
    assert list(frame.columns) == usage.TOKENS_PER_DAY_COLUMNS
    assert str(frame["day"].dtype).startswith("datetime64")
    assert list(frame["day"]) == sorted(frame["day"])  # ordered by day


def test_tokens_per_day_for_bob_only(dbs: Session, seeded: Seeded) -> None:
    frame = usage.tokens_per_day(dbs, user_id=seeded.users["bob"], start=D1, end=D2)
    got = {(r.day.date(), r.model): r.tokens for r in frame.itertuples()}
    assert got == {(D1, "m-a"): 1400, (D2, "m-b"): 1030}


def test_requests_per_day_by_outcome(dbs: Session, seeded: Seeded) -> None:
    frame = usage.requests_per_day(dbs, user_id=seeded.users["alice"], start=D1, end=D2)
    got = {(r.day.date(), r.outcome): r.requests for r in frame.itertuples()}
    assert got == {(D1, "ok"): 2, (D1, "error"): 1, (D2, "ok"): 2, (D2, "cancelled"): 1}


# --- latency -------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", None])
def test_latency_percentiles_per_model_are_percentile_cont(
    dbs: Session, seeded: Seeded, who: str | None
) -> None:
    uid = seeded.users[who] if who else None
    frame = usage.latency_by_model(dbs, user_id=uid, start=D1, end=D2)
    calls = picked(who)
    assert list(frame["model"]) == ["m-a", "m-b"]
    for row in frame.itertuples():
        mine = [c for c in calls if c.model == row.model]
        assert row.ttft_p50_ms == pytest.approx(pct([c.ttft for c in mine], 0.5), abs=1e-9)
        assert row.ttft_p95_ms == pytest.approx(pct([c.ttft for c in mine], 0.95), abs=1e-9)
        assert row.tokens_per_s_p50 == pytest.approx(pct([tps(c) for c in mine], 0.5))
        assert row.tokens_per_s_p95 == pytest.approx(pct([tps(c) for c in mine], 0.95))
        assert row.percentiles_exact


def test_alice_model_a_latency_by_hand(dbs: Session, seeded: Seeded) -> None:
    frame = usage.latency_by_model(dbs, user_id=seeded.users["alice"], start=D1, end=D2)
    a = frame[frame["model"] == "m-a"].iloc[0]
    # ttft of m-a: 150, 180, 200, 300 -> median (180+200)/2; p95 = 200 + 0.85 * 100
    assert a["ttft_p50_ms"] == 190.0
    assert a["ttft_p95_ms"] == pytest.approx(285.0)
    # tokens/s of the ok m-a calls: 50/1.0, 80/2.0, 200/4.0 -> 50, 40, 50 (cancelled left out)
    assert a["tokens_per_s_p50"] == pytest.approx(50.0)


def test_everyones_percentiles_from_the_histogram_are_within_one_percent(
    dbs: Session, seeded: Seeded
) -> None:
    exact = usage.latency_by_model(dbs, user_id=None, start=D1, end=D2)
    estimated = usage.latency_by_model(dbs, user_id=None, start=D1, end=D2, exact_limit=0)
    assert not estimated["percentiles_exact"].any()
    assert list(estimated["model"]) == list(exact["model"])
    for column in ("ttft_p50_ms", "ttft_p95_ms", "tokens_per_s_p50", "tokens_per_s_p95"):
        np.testing.assert_allclose(estimated[column], exact[column], rtol=0.01)
    kpi = usage.kpis(dbs, user_id=None, start=D1, end=D2, exact_limit=0).iloc[0]
    assert kpi["median_ttft_ms"] == pytest.approx(
        pct([c.ttft for c in picked(None)], 0.5), rel=0.01
    )
    assert not kpi["percentiles_exact"]


def test_histogram_estimate_on_many_values_is_within_one_percent(dbs: Session) -> None:
    uid = make_user(dbs, "carol")
    rng = np.random.default_rng(7)
    ttfts = rng.lognormal(mean=5.3, sigma=0.6, size=2000)
    dbs.add_all(
        LlmCall(
            user_id=uid,
            model="m",
            backend="ollama",
            prompt_tokens=1,
            completion_tokens=100,
            ttft_ms=float(value),
            duration_ms=float(value) + 2000.0,
            outcome="ok",
            created_at=at(D1),
        )
        for value in ttfts
    )
    dbs.flush()
    frame = usage.latency_by_model(dbs, user_id=None, start=D1, end=D1, exact_limit=0)
    assert frame.iloc[0]["ttft_p50_ms"] == pytest.approx(np.percentile(ttfts, 50), rel=0.01)
    assert frame.iloc[0]["ttft_p95_ms"] == pytest.approx(np.percentile(ttfts, 95), rel=0.01)
    assert frame.iloc[0]["tokens_per_s_p50"] == pytest.approx(50.0, rel=0.01)


# --- top sessions --------------------------------------------------------------------------


def test_top_sessions_by_tokens(dbs: Session, seeded: Seeded) -> None:
    frame = usage.top_sessions(dbs, user_id=None, start=D1, end=D2)
    assert list(frame["title"]) == ["FX exposure", "EBITDA bridge", "Q3 revenue"]
    assert list(frame["tokens"]) == [2400, 910, 440]
    assert list(frame["requests"]) == [2, 3, 3]
    assert list(frame["username"]) == ["bob", "alice", "alice"]
    assert frame.iloc[0]["session_id"] == str(seeded.sessions["s3"])


def test_top_sessions_limit_and_owner_scope(dbs: Session, seeded: Seeded) -> None:
    frame = usage.top_sessions(dbs, user_id=seeded.users["alice"], start=D1, end=D3, limit=1)
    assert list(frame["title"]) == ["Q3 revenue"]  # 440 + the 1998 of D3
    assert frame.iloc[0]["tokens"] == 440 + 1998


def test_deleted_session_leaves_top_sessions_but_its_tokens_stay_counted(
    dbs: Session, r: redis.Redis, seeded: Seeded
) -> None:
    sessions.delete(dbs, r, user_id=seeded.users["bob"], session_id=seeded.sessions["s3"])
    dbs.commit()
    frame = usage.top_sessions(dbs, user_id=None, start=D1, end=D2)
    assert "FX exposure" not in set(frame["title"])
    total = usage.kpis(dbs, user_id=seeded.users["bob"], start=D1, end=D2).iloc[0]
    assert total["total_tokens"] == 1400 + 1000 + 30


# --- empty and invalid ranges ----------------------------------------------------------------


def test_an_empty_range_gives_empty_frames_with_their_columns(dbs: Session, seeded: Seeded) -> None:
    board = usage.dashboard(dbs, user_id=None, start=date(2025, 1, 1), end=date(2025, 1, 31))
    assert board.empty
    for frame, columns in [
        (board.kpis, usage.KPI_COLUMNS),
        (board.tokens_per_day, usage.TOKENS_PER_DAY_COLUMNS),
        (board.requests_per_day, usage.REQUESTS_PER_DAY_COLUMNS),
        (board.latency_by_model, usage_query.LATENCY_COLUMNS),
        (board.top_sessions, usage.TOP_SESSION_COLUMNS),
    ]:
        assert frame.empty and list(frame.columns) == columns


def test_start_after_end_is_refused_with_a_clear_message(dbs: Session) -> None:
    with pytest.raises(InvalidInput, match=r"start date \(2026-03-05\) is after the end date"):
        usage.dashboard(dbs, user_id=None, start=D3, end=D1)
    for fn in (usage.kpis, usage.tokens_per_day, usage.requests_per_day, usage.top_sessions):
        with pytest.raises(InvalidInput):
            fn(dbs, user_id=None, start=D3, end=D1)


def test_dashboard_equals_the_single_queries(dbs: Session, seeded: Seeded) -> None:
    board = usage.dashboard(dbs, user_id=seeded.users["alice"], start=D1, end=D2)
    args = {"user_id": seeded.users["alice"], "start": D1, "end": D2}
    pd.testing.assert_frame_equal(board.kpis, usage.kpis(dbs, **args))
    pd.testing.assert_frame_equal(board.tokens_per_day, usage.tokens_per_day(dbs, **args))
    pd.testing.assert_frame_equal(board.requests_per_day, usage.requests_per_day(dbs, **args))
    pd.testing.assert_frame_equal(board.latency_by_model, usage.latency_by_model(dbs, **args))
    pd.testing.assert_frame_equal(board.top_sessions, usage.top_sessions(dbs, **args))


def test_last_days_ends_today_utc() -> None:
    clock.set_source(lambda: datetime(2026, 3, 31, 23, 30, tzinfo=UTC))
    try:
        rng = usage.last_days(30)
    finally:
        clock.set_source(None)
    assert (rng.start, rng.end, rng.days) == (date(2026, 3, 2), date(2026, 3, 31), 30)


# --- raw rows and the rollup ------------------------------------------------------------------


def test_calls_returns_the_rows_of_the_range_newest_first(dbs: Session, seeded: Seeded) -> None:
    frame = usage.calls(dbs, user_id=seeded.users["bob"], start=D1, end=D2)
    assert list(frame["prompt_tokens"]) == [20, 700, 1000]
    assert list(frame["username"]) == ["bob"] * 3
    assert pd.isna(frame.iloc[0]["session_id"])
    assert frame.iloc[2]["tokens_per_s"] == pytest.approx(400 / 8.0)


def _rollup_matches_rows(dbs: Session) -> None:
    raw = dbs.execute(
        text(
            "SELECT (created_at AT TIME ZONE 'UTC')::date, user_id, model, outcome, count(*),"
            " sum(prompt_tokens), sum(completion_tokens) FROM llm_calls GROUP BY 1, 2, 3, 4"
        )
    ).all()
    rolled = dbs.execute(
        text(
            "SELECT day, user_id, model, outcome, sum(requests), sum(prompt_tokens),"
            " sum(completion_tokens) FROM usage_daily GROUP BY 1, 2, 3, 4"
        )
    ).all()
    assert sorted(map(tuple, raw)) == sorted(map(tuple, rolled))
    ttft_rows = dbs.scalar(select(func.count()).where(LlmCall.ttft_ms.is_not(None)))
    hist = dbs.scalar(
        select(func.sum(UsageLatencyHistogram.calls)).where(UsageLatencyHistogram.metric == "ttft")
    )
    assert int(hist or 0) == ttft_rows


def test_rollup_follows_inserts_updates_and_deletes(
    dbs: Session, r: redis.Redis, seeded: Seeded
) -> None:
    _rollup_matches_rows(dbs)
    dbs.execute(text("UPDATE llm_calls SET prompt_tokens = prompt_tokens + 1 WHERE model = 'm-b'"))
    _rollup_matches_rows(dbs)
    sessions.delete(dbs, r, user_id=seeded.users["alice"], session_id=seeded.sessions["s1"])
    _rollup_matches_rows(dbs)
    dbs.execute(text("DELETE FROM users WHERE username = 'bob'"))  # cascades to llm_calls
    _rollup_matches_rows(dbs)
    assert (
        dbs.scalar(select(func.count()).select_from(UsageDaily).where(UsageDaily.requests <= 0))
        == 0
    )
    dbs.execute(text("DELETE FROM llm_calls"))
    assert dbs.scalar(select(func.count()).select_from(UsageDaily)) == 0
    assert dbs.scalar(select(func.count()).select_from(UsageLatencyHistogram)) == 0


def test_rebuild_rollups_recomputes_from_the_rows(dbs: Session, seeded: Seeded) -> None:
    by_trigger = sorted(map(tuple, dbs.execute(text("SELECT * FROM usage_latency_hist")).all()))
    dbs.execute(text("DELETE FROM usage_daily"))
    dbs.execute(text("UPDATE usage_latency_hist SET calls = calls + 5"))
    assert usage_percentiles.rebuild_rollups(dbs) == len(CALLS)
    _rollup_matches_rows(dbs)
    rebuilt = sorted(map(tuple, dbs.execute(text("SELECT * FROM usage_latency_hist")).all()))
    assert rebuilt == by_trigger
    kpi = usage.kpis(dbs, user_id=None, start=D1, end=D3).iloc[0]
    assert kpi["requests"] == len(CALLS)


def test_old_calls_fall_out_of_the_default_range(dbs: Session, seeded: Seeded) -> None:
    clock.set_source(lambda: at(D3 + timedelta(days=40)))
    rng = usage.last_days(30)
    assert usage.dashboard(dbs, user_id=None, start=rng.start, end=rng.end).empty
