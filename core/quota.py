"""Daily token quotas: the limit that applies to a user, today's use, and the check a chat
turn makes before the model is called.

A per-user override (``users.daily_token_quota``, set by an admin) wins: a positive number is
the quota and 0 means unlimited. Without one, DAILY_TOKEN_QUOTA applies (0 = none). Days are
UTC.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core import metrics
from core.accounts import Identity
from core.clock import now
from core.config import get_settings
from core.errors import Forbidden, InvalidInput, NotFound, QuotaExceeded
from core.models import LlmCall, QuotaReservation, User

MAX_QUOTA = 10**12
# A reservation left by a turn whose process died stops counting after this long (a turn
# lasts at most about LLM_READ_TIMEOUT_SECONDS per chunk; a quarter of an hour is generous).
RESERVATION_TTL = timedelta(minutes=15)


def _today_start() -> datetime:
    return now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def tokens_used_today(db: Session, *, user_id: uuid.UUID) -> int:
    """Prompt + completion tokens the user spent since midnight UTC."""
    stmt = select(
        func.coalesce(func.sum(LlmCall.prompt_tokens + LlmCall.completion_tokens), 0)
    ).where(LlmCall.user_id == user_id, LlmCall.created_at >= _today_start())
    return int(db.scalar(stmt) or 0)


def daily_quota(db: Session, *, user_id: uuid.UUID) -> int | None:
    """The user's daily token quota, or None for unlimited.

    A per-user override (``users.daily_token_quota``, set by an admin) wins: a positive number
    is the quota and 0 means unlimited. Without one, DAILY_TOKEN_QUOTA applies (0 = none).
    """
    override = db.scalar(select(User.daily_token_quota).where(User.id == user_id))
    if override is not None:
        return int(override) or None
    return get_settings().daily_token_quota or None


@dataclass(frozen=True)
class QuotaStatus:
    """Today's quota position, for the usage page and the chat."""

    used: int
    quota: int | None  # None = unlimited
    source: str  # "user" (admin override) or "default" (DAILY_TOKEN_QUOTA)
    resets_at: datetime

    @property
    def remaining(self) -> int | None:
        return None if self.quota is None else max(0, self.quota - self.used)

    @property
    def fraction_used(self) -> float | None:
        return None if not self.quota else min(1.0, self.used / self.quota)

    def describe(self) -> str:
        """What applies, in words: "the default, 50,000 tokens a day", "unlimited (own)"."""
        amount = "unlimited" if self.quota is None else f"{self.quota:,} tokens a day"
        return f"the default, {amount}" if self.source == "default" else f"{amount} (own quota)"


def quota_status(db: Session, *, user_id: uuid.UUID) -> QuotaStatus:
    override = db.scalar(select(User.daily_token_quota).where(User.id == user_id))
    return QuotaStatus(
        used=tokens_used_today(db, user_id=user_id),
        quota=daily_quota(db, user_id=user_id),
        source="user" if override is not None else "default",
        resets_at=_today_start() + timedelta(days=1),
    )


def set_daily_quota(
    db: Session, *, actor: Identity, user_id: uuid.UUID, quota: int | None
) -> QuotaStatus:
    """An admin sets a user's daily quota: a number of tokens, 0 = unlimited, None = default.
    Returns what applies now (to say so)."""
    if not actor.is_admin:
        raise Forbidden("Only administrators can change a user's token quota.")
    if quota is not None:
        if isinstance(quota, bool) or not isinstance(quota, int) or quota < 0:
            raise InvalidInput("quota", "The quota must be a whole number of tokens, 0 or more.")
        if quota > MAX_QUOTA:
            raise InvalidInput("quota", f"The quota must be at most {MAX_QUOTA:,} tokens.")
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("User not found.")
    user.daily_token_quota = quota
    db.flush()
    return quota_status(db, user_id=user_id)


def _refuse(used: int, quota: int) -> QuotaExceeded:
    metrics.QUOTA_REFUSALS.inc()
    return QuotaExceeded(
        f"Daily token quota reached: {used:,} of {quota:,} tokens used today. "
        "It resets at midnight UTC; an admin can raise it."
    )


def check_quota(db: Session, *, user_id: uuid.UUID) -> int | None:
    """Raise ``QuotaExceeded`` (before any model call) when today's quota is used up; the
    quota otherwise (None: unlimited)."""
    quota = daily_quota(db, user_id=user_id)
    if quota is None:
        return None
    used = tokens_used_today(db, user_id=user_id)
    if used >= quota:
        raise _refuse(used, quota)
    return quota


def reserve(db: Session, *, user_id: uuid.UUID, tokens: int) -> uuid.UUID | None:
    """Hold ``tokens`` (the most a turn can use) against the user's quota for RESERVATION_TTL,
    or raise ``QuotaExceeded``; None when the user has no quota (nothing is held).

    The user's row is locked for the check, so turns in any number of app processes take
    turns here: a turn starts only while what was used today plus what turns in flight hold
    is under the quota. So the quota is never exceeded by more than one turn's reservation.
    Run inside a transaction; the caller commits.
    """
    db.scalar(select(User.id).where(User.id == user_id).with_for_update())
    quota = daily_quota(db, user_id=user_id)
    if quota is None:
        return None
    used = tokens_used_today(db, user_id=user_id)
    held = int(
        db.scalar(
            select(func.coalesce(func.sum(QuotaReservation.tokens), 0)).where(
                QuotaReservation.user_id == user_id, QuotaReservation.expires_at > now()
            )
        )
        or 0
    )
    if used >= quota:
        raise _refuse(used, quota)
    if used + held >= quota:
        metrics.QUOTA_REFUSALS.inc()
        raise QuotaExceeded(
            f"Your daily token quota has {quota - used:,} of {quota:,} tokens left, and the "
            "replies you have in flight may use them all: wait for them to finish and send it "
            "again."
        )
    row = QuotaReservation(user_id=user_id, tokens=tokens, expires_at=now() + RESERVATION_TTL)
    db.add(row)
    db.flush()
    return row.id


def release(db: Session, reservation: uuid.UUID | None, *, user_id: uuid.UUID) -> None:
    """Drop the user's reservation (the usage row, written in the same transaction, counts)."""
    if reservation is not None:
        db.execute(
            delete(QuotaReservation).where(
                QuotaReservation.id == reservation, QuotaReservation.user_id == user_id
            )
        )
