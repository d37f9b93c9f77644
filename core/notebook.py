"""One line for a notebook: ``nb = core.notebook.connect()``.

The connection settings are the app's own (environment, then the project's ``.env``), so a
notebook sees the same PostgreSQL and Redis as ``make run``: the embedded servers under
``.data`` when nothing is configured (attaching to them if the app is running).

A notebook has no page to commit for it, so ``nb.db`` commits every statement as it runs
(AUTOCOMMIT): reads never leave a transaction open, and a delete is final at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pandas as pd
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import UserChoice, get_user
from core.config import Settings, get_settings
from core.models import User


@dataclass
class Notebook:
    """What a notebook needs: the database session, the Redis client and user lookups."""

    db: Session
    r: redis.Redis
    settings: Settings = field(repr=False)

    def user(self, username: str) -> UserChoice:
        """An account by username (case-insensitive); ``NotFound`` if there is none."""
        return get_user(self.db, username=username)

    def user_id(self, username: str | None) -> uuid.UUID | None:
        """The ``user_id`` argument for core queries: None (everyone) when no name is given."""
        return None if username is None else self.user(username).id

    def users(self) -> pd.DataFrame:
        """Every account: username, display name, role, created_at, quota override."""
        rows = self.db.execute(
            select(
                User.username,
                User.display_name,
                User.role,
                User.created_at,
                User.daily_token_quota,
                User.id,
            ).order_by(User.username)
        ).all()
        columns = ["username", "display_name", "role", "created_at", "daily_token_quota", "id"]
        return pd.DataFrame([tuple(r) for r in rows], columns=columns)

    def close(self) -> None:
        self.db.close()


def connect() -> Notebook:
    """The notebook's database session and Redis client, from the app's settings."""
    from core import database, services

    settings = get_settings()
    services.ping_postgres(database.get_engine())
    engine = database.get_engine().execution_options(isolation_level="AUTOCOMMIT")
    session = Session(engine, expire_on_commit=False)
    client = services.redis_client(settings)
    services.ping_redis(client)
    return Notebook(session, client, settings)
