"""The usage ledger: one ``llm_calls`` row per model request, and the queries over it."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from core.models import OUTCOMES, LlmCall

MAX_ERROR_TEXT = 2000


def record_call(
    db: Session,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID | None,
    model: str,
    backend: str,
    prompt_tokens: int,
    completion_tokens: int,
    ttft_ms: float | None,
    duration_ms: float,
    outcome: str,
    error: str | None = None,
) -> LlmCall:
    """Add one usage row (flushed, not committed).

    ``session_id`` must be one of the user's sessions (another user's is ``NotFound``, like
    everywhere else); a session deleted meanwhile is recorded as None, so no usage is lost.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    if session_id is not None:
        session_id = _owned_session_or_none(db, user_id=user_id, session_id=session_id)
    row = LlmCall(
        user_id=user_id,
        session_id=session_id,
        model=model,
        backend=backend,
        prompt_tokens=max(0, int(prompt_tokens)),
        completion_tokens=max(0, int(completion_tokens)),
        ttft_ms=ttft_ms,
        duration_ms=max(0.0, float(duration_ms)),
        outcome=outcome,
        error=error[:MAX_ERROR_TEXT] if error else None,
    )
    db.add(row)
    db.flush()
    return row


def _owned_session_or_none(
    db: Session, *, user_id: uuid.UUID, session_id: uuid.UUID
) -> uuid.UUID | None:
    from sqlalchemy import select

    from core.errors import NotFound
    from core.models import ConversationSession

    owner = db.scalar(
        select(ConversationSession.user_id).where(ConversationSession.id == session_id)
    )
    if owner is None:
        return None
    if owner != user_id:
        raise NotFound("Session not found.")
    return session_id


def tokens_used_today(db: Session, *, user_id: uuid.UUID) -> int:
    """Prompt + completion tokens the user spent since midnight UTC."""
    from sqlalchemy import func, select

    from core.clock import now

    start = now().replace(hour=0, minute=0, second=0, microsecond=0)
    stmt = select(
        func.coalesce(func.sum(LlmCall.prompt_tokens + LlmCall.completion_tokens), 0)
    ).where(LlmCall.user_id == user_id, LlmCall.created_at >= start)
    return int(db.scalar(stmt) or 0)


def daily_quota(db: Session, *, user_id: uuid.UUID) -> int | None:
    """The user's daily token quota, or None for unlimited (setting DAILY_TOKEN_QUOTA=0)."""
    from core.config import get_settings

    quota = get_settings().daily_token_quota
    return quota or None


def check_quota(db: Session, *, user_id: uuid.UUID) -> None:
    """Raise ``QuotaExceeded`` (before any model call) when today's quota is used up."""
    from core import metrics
    from core.errors import QuotaExceeded

    quota = daily_quota(db, user_id=user_id)
    if quota is None:
        return
    used = tokens_used_today(db, user_id=user_id)
    if used >= quota:
        metrics.QUOTA_REFUSALS.inc()
        raise QuotaExceeded(
            f"Daily token quota reached: {used:,} of {quota:,} tokens used today. "
            "It resets at midnight UTC; an admin can raise it."
        )
