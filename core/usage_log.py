"""The usage ledger's writer: one ``llm_calls`` row per model request.

Kept apart from the queries (``core.usage``) so a chat turn, which only writes, never imports
pandas.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import OUTCOMES, ConversationSession, LlmCall

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
    tool_calls: int = 0,
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
        tool_calls=max(0, int(tool_calls)),
    )
    db.add(row)
    db.flush()
    return row


def _owned_session_or_none(
    db: Session, *, user_id: uuid.UUID, session_id: uuid.UUID
) -> uuid.UUID | None:
    owner = db.scalar(
        select(ConversationSession.user_id).where(ConversationSession.id == session_id)
    )
    if owner is None:
        return None
    if owner != user_id:
        raise NotFound("Session not found.")
    return session_id
