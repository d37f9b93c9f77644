"""Usage: requests, tokens, speed and errors over a date range, and today's token quota."""

from __future__ import annotations

import uuid

import streamlit as st

from app.page import apply, current_user, header, show_error, table, write
from app.scope import pick
from core import charts, quota, text, usage
from core.errors import LedgerError

user = current_user()
header("Usage", "Requests, tokens, speed and errors of your chats, and today's token quota.")
default = usage.last_days(30)

scope = pick(user, label="Whose usage", me="Me")
picked = st.date_input("Dates (UTC, both included)", (default.start, default.end), key="dates")


def quota_panel(uid: uuid.UUID) -> None:
    """Today's use against the quota; admins can change the user's quota here."""
    status = write(lambda d: quota.quota_status(d, user_id=uid))
    used, limit = status.used, status.quota
    left, right = st.columns(2)
    left.metric("Tokens used today", f"{used:,}")
    right.metric("Remaining today", "unlimited" if limit is None else f"{status.remaining:,}")
    if limit is not None:
        st.progress(
            status.fraction_used or 0.0, f"{used:,} of {limit:,} tokens ({status.source} quota)"
        )
    st.caption(f"Days are UTC; today's count resets at {status.resets_at:%Y-%m-%d %H:%M} UTC.")
    if user.is_admin:
        with st.expander("Change this user's daily quota"):
            kinds = ("The default (DAILY_TOKEN_QUOTA)", "Its own quota")
            kind = st.radio("Quota", kinds, int(status.source != "default"), horizontal=True)
            own = kind == kinds[1]
            if own:
                value = st.number_input(
                    "Tokens per day (0 = unlimited)", 0, 10**12, limit or 0, 1000
                )
            if st.button("Save quota"):
                new = int(value) if own else None
                apply(
                    lambda d: quota.set_daily_quota(d, actor=user, user_id=uid, quota=new),
                    lambda now_applies: f"Quota saved: {now_applies.describe()}.",
                )


try:
    if scope is not None:
        quota_panel(scope)
    if not isinstance(picked, tuple) or len(picked) != 2:
        st.info("Pick an end date to see the range.")
        st.stop()
    first, last = picked
    board = write(lambda d: usage.dashboard(d, user_id=scope, start=first, end=last))
    if board.empty:
        st.info(
            f"No requests between {board.range.start} and {board.range.end}. Try a wider range."
        )
        st.stop()
    k = board.kpis.iloc[0]
    cols = st.columns(5)
    cols[0].metric("Requests", f"{k['requests']:,}")
    cols[1].metric("Prompt tokens", f"{k['prompt_tokens']:,}")
    cols[2].metric("Completion tokens", f"{k['completion_tokens']:,}")
    ttft = k["median_ttft_ms"]
    cols[3].metric("Median time to first token", "—" if ttft != ttft else f"{ttft:,.0f} ms")
    cols[4].metric(
        "Error rate",
        f"{k['error_rate']:.1%}",
        text.counted(int(k["errors"]), "error"),
        "off",
        delta_arrow="off",
    )
    if not k["percentiles_exact"]:
        st.caption("Percentiles over all users are estimated from 1 % histogram buckets.")
    left, right = st.columns(2)
    days = {"start": board.range.start, "end": board.range.end}
    left.altair_chart(charts.tokens_per_day(board.tokens_per_day, **days), width="stretch")
    right.altair_chart(charts.requests_per_day(board.requests_per_day, **days), width="stretch")
    long = charts.latency_long(board.latency_by_model)
    left.altair_chart(charts.latency(long, "Time to first token (ms)"), width="stretch")
    right.altair_chart(charts.latency(long, "Tokens per second"), width="stretch")
    if not board.top_sessions.empty:
        st.altair_chart(charts.top_sessions(board.top_sessions), width="stretch")
    with st.expander("Figures as tables"):
        table(board.latency_by_model, hide_index=True)
        table(board.top_sessions, hide_index=True)
except LedgerError as exc:
    show_error(exc)
