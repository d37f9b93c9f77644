"""Daily token quotas: the DAILY_TOKEN_QUOTA default, per-user overrides set by admins."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from core import accounts, clock, quota, usage_log
from core.accounts import Identity
from core.config import get_settings
from core.errors import Forbidden, InvalidInput, NotFound, QuotaExceeded

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ADMIN = Identity(uuid.uuid4(), "root", "Root", "admin")
ANALYST = Identity(uuid.uuid4(), "ann", "Ann", "user")


@pytest.fixture
def default_quota(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setenv("DAILY_TOKEN_QUOTA", "1000")
    get_settings.cache_clear()
    yield 1000
    monkeypatch.delenv("DAILY_TOKEN_QUOTA")
    get_settings.cache_clear()


@pytest.fixture
def uid(dbs: Session) -> uuid.UUID:
    user = accounts.create_user(
        dbs, username="ann", email="ann@example.com", display_name="Ann", password="x" * 12
    )
    dbs.commit()
    return user.id


def spend(dbs: Session, user_id: uuid.UUID, tokens: int, at: datetime) -> None:
    clock.set_source(lambda: at)
    usage_log.record_call(
        dbs,
        user_id=user_id,
        session_id=None,
        model="m",
        backend="ollama",
        prompt_tokens=tokens // 2,
        completion_tokens=tokens - tokens // 2,
        ttft_ms=10.0,
        duration_ms=20.0,
        outcome="ok",
    )
    clock.set_source(lambda: NOON)


def test_no_quota_by_default(dbs: Session, uid: uuid.UUID) -> None:
    assert quota.daily_quota(dbs, user_id=uid) is None
    status = quota.quota_status(dbs, user_id=uid)
    assert (status.quota, status.remaining, status.fraction_used) == (None, None, None)


def test_the_setting_is_the_default_quota(dbs: Session, uid: uuid.UUID, default_quota: int) -> None:
    assert quota.daily_quota(dbs, user_id=uid) == 1000
    assert quota.quota_status(dbs, user_id=uid).source == "default"


def test_an_admin_override_wins_and_zero_means_unlimited(
    dbs: Session, uid: uuid.UUID, default_quota: int
) -> None:
    quota.set_daily_quota(dbs, actor=ADMIN, user_id=uid, quota=50_000)
    assert quota.daily_quota(dbs, user_id=uid) == 50_000
    assert quota.quota_status(dbs, user_id=uid).source == "user"
    quota.set_daily_quota(dbs, actor=ADMIN, user_id=uid, quota=0)
    assert quota.daily_quota(dbs, user_id=uid) is None
    quota.set_daily_quota(dbs, actor=ADMIN, user_id=uid, quota=None)
    assert quota.daily_quota(dbs, user_id=uid) == 1000


def test_used_and_remaining_count_only_today_utc(
    dbs: Session, uid: uuid.UUID, default_quota: int
) -> None:
    spend(dbs, uid, 300, NOON - timedelta(hours=2))
    spend(dbs, uid, 99, NOON.replace(hour=0) - timedelta(microseconds=1))  # yesterday
    spend(dbs, uid, 150, NOON.replace(hour=0))
    clock.set_source(lambda: NOON)
    status = quota.quota_status(dbs, user_id=uid)
    assert (status.used, status.quota, status.remaining) == (450, 1000, 550)
    assert status.fraction_used == pytest.approx(0.45)
    assert status.resets_at == datetime(2026, 3, 11, tzinfo=UTC)


def test_check_quota_refuses_once_the_override_is_used_up(dbs: Session, uid: uuid.UUID) -> None:
    clock.set_source(lambda: NOON)
    quota.set_daily_quota(dbs, actor=ADMIN, user_id=uid, quota=500)
    spend(dbs, uid, 499, NOON)
    quota.check_quota(dbs, user_id=uid)  # one token left: allowed
    spend(dbs, uid, 1, NOON)
    with pytest.raises(QuotaExceeded, match=r"500 of 500 tokens used today"):
        quota.check_quota(dbs, user_id=uid)
    status = quota.quota_status(dbs, user_id=uid)
    assert (status.remaining, status.fraction_used) == (0, 1.0)


def test_only_admins_set_quotas(dbs: Session, uid: uuid.UUID) -> None:
    with pytest.raises(Forbidden, match="Only administrators"):
        quota.set_daily_quota(dbs, actor=ANALYST, user_id=uid, quota=10**9)
    assert quota.daily_quota(dbs, user_id=uid) is None


@pytest.mark.parametrize("bad", [-1, 10**13, True, 2.5, "100"])
def test_a_bad_quota_is_refused(dbs: Session, uid: uuid.UUID, bad: object) -> None:
    with pytest.raises(InvalidInput):
        quota.set_daily_quota(dbs, actor=ADMIN, user_id=uid, quota=bad)  # type: ignore[arg-type]


def test_quota_for_an_unknown_user_is_not_found(dbs: Session) -> None:
    with pytest.raises(NotFound):
        quota.set_daily_quota(dbs, actor=ADMIN, user_id=uuid.uuid4(), quota=5)
