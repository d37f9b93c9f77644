"""Whose data a page or notebook may read: yourself, or (admins) another user or everyone.

Core queries take an explicit ``user_id`` (``None`` = all users). Pages turn the signed-in
identity and the admin's choice into that argument here, so the rule lives in one place.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.accounts import Identity
from core.errors import Forbidden, NotFound
from core.models import User


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
