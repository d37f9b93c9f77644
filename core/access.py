"""Whose data a page or notebook may read: yourself, or (admins) another user or everyone.

Core queries take an explicit ``user_id`` (``None`` = all users). Pages turn the signed-in
identity and the admin's choice into that argument here, so the rule lives in one place.

One session by id follows the same rule: its owner may do anything with it; an administrator
may read, rename, export and delete anyone's (they moderate) but never post in it; anyone else
gets ``NotFound``, exactly as for an id that does not exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import drafts, history, sessions, text
from core.accounts import Identity
from core.errors import Forbidden, NotFound
from core.export import ExportFile, to_file
from core.models import ConversationSession, User


@dataclass(frozen=True)
class UserChoice:
    id: uuid.UUID
    username: str
    display_name: str

    @property
    def label(self) -> str:
        if self.display_name and self.display_name != self.username:
            return f"{self.username} ({self.display_name})"
        return self.username


def scope(
    identity: Identity, *, user_id: uuid.UUID | None = None, all_users: bool = False
) -> uuid.UUID | None:
    """The ``user_id`` argument for core queries: the signed-in user by default; an admin may
    ask for another user (``user_id``) or everyone (``all_users`` -> ``None``)."""
    if not identity.is_admin:
        if all_users or (user_id is not None and user_id != identity.id):
            raise Forbidden("Only administrators can see other users' sessions and usage.")
        return identity.id
    if all_users:
        return None
    return user_id or identity.id


def user_choices(db: Session) -> list[UserChoice]:
    """Every account, by username: the admin's user picker."""
    rows = db.execute(select(User.id, User.username, User.display_name).order_by(User.username))
    return [UserChoice(uid, name, display) for uid, name, display in rows]


def get_user(db: Session, *, username: str) -> UserChoice:
    """One account by username (case-insensitive), for notebooks: ``NotFound`` if none."""
    from core.accounts import get_by_username

    user = get_by_username(db, username=username)
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    return UserChoice(user.id, user.username, user.display_name)


# --- one session by id ---------------------------------------------------------------------


def session_owner(db: Session, *, actor: Identity, session_id: uuid.UUID | str) -> uuid.UUID:
    """The owner of a session ``actor`` may manage: their own, or (admins) anyone's.

    Anyone else's session is ``NotFound`` with the same message as an unknown id, so ids
    cannot be probed. Pass the result as ``user_id`` to the owner-scoped ``core.sessions``
    functions.
    """
    sid = sessions.parse_id(session_id)
    owner = db.scalar(select(ConversationSession.user_id).where(ConversationSession.id == sid))
    if owner is None or (owner != actor.id and not actor.is_admin):
        raise NotFound("Session not found.")
    return owner


def rename(
    db: Session, *, actor: Identity, session_id: uuid.UUID | str, title: str
) -> ConversationSession:
    """Rename a session ``actor`` may manage (``session_owner``)."""
    owner = session_owner(db, actor=actor, session_id=session_id)
    return sessions.rename(db, user_id=owner, session_id=session_id, title=title)


def delete(db: Session, r: redis.Redis, *, actor: Identity, session_id: uuid.UUID | str) -> None:
    """Delete a session ``actor`` may manage, with its history (``sessions.delete``)."""
    owner = session_owner(db, actor=actor, session_id=session_id)
    sessions.delete(db, r, user_id=owner, session_id=session_id)


def export(
    db: Session, r: redis.Redis, *, actor: Identity, session_id: uuid.UUID | str, ext: str
) -> ExportFile:
    """Export a session ``actor`` may manage, as one of ``export.EXPORT_KINDS``."""
    owner = session_owner(db, actor=actor, session_id=session_id)
    return to_file(db, r, user_id=owner, session_id=session_id, ext=ext)


@dataclass(frozen=True)
class OpenedSession:
    """A conversation as the chat page shows it, and whether the viewer may post in it."""

    session: sessions.Summary
    owner_display_name: str
    messages: list[history.Message]
    read_only: bool  # an administrator reading another user's conversation

    @property
    def notice(self) -> str | None:
        """What the page says where the viewer cannot post, as escaped Markdown (the display
        name is the owner's own text)."""
        if not self.read_only:
            return None
        return text.escape_markdown(f"{self.owner_display_name}'s conversation, read-only")


def open_session(
    db: Session, r: redis.Redis, *, viewer: Identity, session_id: uuid.UUID | str
) -> OpenedSession:
    """The conversation behind a chat URL: the viewer's own (they can go on with it), or for an
    administrator anyone's, read-only. ``NotFound`` for anything else."""
    # One query for the row, its owner and their name (every chat run with a session in its
    # URL opens it), then the history from Redis.
    row, name = sessions._summary_and_owner_name(db, session_id=session_id)
    owner = row.user_id
    if owner != viewer.id and not viewer.is_admin:
        raise NotFound("Session not found.")  # the same answer as an unknown id
    drafts.recover(db, r, session_id=row.id)  # a reply whose process died mid-way
    shown = history.read_all(r, session_id=row.id)
    return OpenedSession(row, name, shown, read_only=owner != viewer.id)
