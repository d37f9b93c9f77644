"""Login, persisted lockout and session validity on real PostgreSQL (time from core.clock)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import accounts, admin, clock, login, passwords
from core.config import get_settings
from core.errors import AccountDisabled, AccountLocked, AuthenticationFailed, InvalidInput
from core.models import LoginFailure, User
from tests.support.locks import wait_until_blocked
from tests.support.people import PASSWORD, make_user

WRONG = "wrong horse battery!"
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def t(clean_state: None) -> Iterator[Clock]:
    fake = Clock()
    clock.set_source(lambda: fake.now)
    yield fake
    clock.set_source(None)


make = partial(make_user, commit=True)  # committed: other connections see it


def attempt(dbs: Session, name: str, password: str) -> login.LoginResult:
    result = login.attempt(dbs, username=name, password=password)
    dbs.commit()
    return result


def counter(outcome: str) -> float:
    return REGISTRY.get_sample_value("ledger_logins_total", {"outcome": outcome}) or 0.0


def lockouts() -> float:
    return REGISTRY.get_sample_value("ledger_lockouts_total") or 0.0


# --- outcomes --------------------------------------------------------------------------------


def test_right_password_logs_in_case_insensitively(dbs: Session, t: Clock) -> None:
    make(dbs, "Alice")
    before = counter("ok")
    result = attempt(dbs, "  ALICE ", PASSWORD)
    assert result.ok and result.identity is not None
    assert result.identity.username == "Alice" and result.issued_at == T0
    assert counter("ok") == before + 1
    assert accounts.get_by_username(dbs, username="alice").last_login_at == T0  # type: ignore[union-attr]


def test_wrong_password_and_unknown_user_get_the_same_message(dbs: Session, t: Clock) -> None:
    make(dbs)
    wrong = attempt(dbs, "alice", WRONG)
    unknown = attempt(dbs, "nobody", WRONG)
    assert isinstance(wrong.error, AuthenticationFailed)
    assert isinstance(unknown.error, AuthenticationFailed)
    assert str(wrong.error) == str(unknown.error) == "Wrong username or password."


def test_failures_are_persisted_and_success_resets_them(dbs: Session, t: Clock) -> None:
    user = make(dbs)
    for _ in range(3):
        attempt(dbs, "alice", WRONG)
    dbs.refresh(user)
    assert user.failed_logins == 3
    assert attempt(dbs, "alice", PASSWORD).ok
    dbs.refresh(user)
    assert user.failed_logins == 0


def test_fifth_failure_locks_for_fifteen_minutes(dbs: Session, t: Clock) -> None:
    user = make(dbs)
    locks = lockouts()
    results = [attempt(dbs, "alice", WRONG) for _ in range(5)]
    assert all(isinstance(r.error, AuthenticationFailed) for r in results[:4])
    assert isinstance(results[4].error, AccountLocked)
    assert "try again in 15 minutes" in str(results[4].error)
    assert lockouts() == locks + 1
    dbs.refresh(user)
    assert user.locked_until == T0 + timedelta(minutes=15)


def test_locked_account_refuses_even_the_right_password(dbs: Session, t: Clock) -> None:
    make(dbs)
    for _ in range(5):
        attempt(dbs, "alice", WRONG)
    before = counter("locked")
    t.advance(minutes=14)
    result = attempt(dbs, "alice", PASSWORD)
    assert isinstance(result.error, AccountLocked) and "1 minute" in str(result.error)
    assert counter("locked") == before + 1


def test_lock_ends_after_the_window_and_counting_starts_afresh(dbs: Session, t: Clock) -> None:
    user = make(dbs)
    for _ in range(5):
        attempt(dbs, "alice", WRONG)
    t.advance(minutes=15, seconds=1)
    assert isinstance(attempt(dbs, "alice", WRONG).error, AuthenticationFailed)
    dbs.refresh(user)
    assert (user.failed_logins, user.locked_until) == (1, None)
    assert attempt(dbs, "alice", PASSWORD).ok


def test_unknown_names_lock_exactly_like_real_ones(dbs: Session, t: Clock) -> None:
    make(dbs)
    real = [str(attempt(dbs, "alice", WRONG).error) for _ in range(6)]
    ghost = [str(attempt(dbs, "ghost", WRONG).error) for _ in range(6)]
    assert real == ghost
    assert "Too many failed logins" in ghost[-1]
    row = dbs.get(LoginFailure, "ghost")
    assert row is not None and row.locked_until == T0 + timedelta(minutes=15)


def test_unknown_name_lock_also_expires(dbs: Session, t: Clock) -> None:
    for _ in range(5):
        attempt(dbs, "ghost", WRONG)
    t.advance(minutes=16)
    assert isinstance(attempt(dbs, "ghost", WRONG).error, AuthenticationFailed)


def test_names_no_account_can_have_are_not_stored(dbs: Session, t: Clock) -> None:
    for name in ["x", "robert'); DROP TABLE users;--", "<script>", "李雷", "a" * 100_000]:
        assert isinstance(attempt(dbs, name, WRONG).error, AuthenticationFailed)
    assert dbs.scalar(select(func.count()).select_from(LoginFailure)) == 0


def test_a_wrong_password_and_an_unknown_name_count_as_bad_credentials(
    dbs: Session, t: Clock
) -> None:
    make(dbs)
    before = counter("bad_credentials")
    attempt(dbs, "alice", WRONG)
    attempt(dbs, "nobody", WRONG)
    attempt(dbs, "<script>", WRONG)  # a name no account can have
    assert counter("bad_credentials") == before + 3


def test_the_failure_that_locks_counts_as_bad_credentials_not_locked(
    dbs: Session, t: Clock
) -> None:
    make(dbs)
    for _ in range(4):
        attempt(dbs, "alice", WRONG)
    bad, locked = counter("bad_credentials"), counter("locked")
    assert isinstance(attempt(dbs, "alice", WRONG).error, AccountLocked)
    assert (counter("bad_credentials"), counter("locked")) == (bad + 1, locked)


def test_a_disabled_account_counts_as_disabled_only_with_the_right_password(
    dbs: Session, t: Clock
) -> None:
    user = make(dbs)
    user.disabled = True
    dbs.commit()
    disabled, bad = counter("disabled"), counter("bad_credentials")
    attempt(dbs, "alice", PASSWORD)
    assert counter("disabled") == disabled + 1
    attempt(dbs, "alice", WRONG)
    assert (counter("disabled"), counter("bad_credentials")) == (disabled + 1, bad + 1)


def test_disabled_account_is_told_only_after_the_right_password(dbs: Session, t: Clock) -> None:
    user = make(dbs)
    user.disabled = True
    dbs.commit()
    assert isinstance(attempt(dbs, "alice", WRONG).error, AuthenticationFailed)
    result = attempt(dbs, "alice", PASSWORD)
    assert isinstance(result.error, AccountDisabled) and "disabled" in str(result.error)
    assert result.identity is None


def test_hundred_kilobyte_password_is_just_a_wrong_password(dbs: Session, t: Clock) -> None:
    user = make(dbs)
    result = attempt(dbs, "alice", "p" * 100_000)
    assert isinstance(result.error, AuthenticationFailed)
    dbs.refresh(user)
    assert user.failed_logins == 1 and passwords.verify_password(PASSWORD, user.password_hash)


@pytest.mark.parametrize(
    "name", ["alice' OR '1'='1", "alice'--", "<b>alice</b>", "ålice", "alice\x00"]
)
def test_injection_in_the_username_matches_nobody(dbs: Session, t: Clock, name: str) -> None:
    user = make(dbs)
    assert isinstance(attempt(dbs, name, PASSWORD).error, AuthenticationFailed)
    dbs.refresh(user)
    assert user.failed_logins == 0 and dbs.scalar(select(func.count()).select_from(User)) == 1


def test_login_follows_a_changed_bcrypt_cost(
    dbs: Session, t: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import get_settings

    user = make(dbs)
    assert passwords.hash_cost(user.password_hash) == 4
    monkeypatch.setenv("BCRYPT_ROUNDS", "5")
    get_settings.cache_clear()
    try:
        assert attempt(dbs, "alice", PASSWORD).ok
        dbs.refresh(user)
        assert passwords.hash_cost(user.password_hash) == 5
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


# --- lockout settings ------------------------------------------------------------------------


@pytest.fixture
def lockout(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``lockout(attempts=3, minutes=2)``: LOGIN_MAX_ATTEMPTS / LOGIN_LOCKOUT_MINUTES as set."""

    def configure(*, attempts: int = 5, minutes: float = 15) -> None:
        monkeypatch.setenv("LOGIN_MAX_ATTEMPTS", str(attempts))
        monkeypatch.setenv("LOGIN_LOCKOUT_MINUTES", str(minutes))
        get_settings.cache_clear()

    yield configure
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.parametrize("name", ["alice", "ghost"])
def test_the_third_failure_locks_when_max_attempts_is_three(
    dbs: Session, t: Clock, lockout: Callable[..., None], name: str
) -> None:
    make(dbs)
    lockout(attempts=3)
    first, second, third = (attempt(dbs, name, WRONG) for _ in range(3))
    assert isinstance(first.error, AuthenticationFailed)
    assert isinstance(second.error, AuthenticationFailed)
    assert isinstance(third.error, AccountLocked) and "15 minutes" in str(third.error)
    assert isinstance(attempt(dbs, name, PASSWORD).error, AccountLocked)


def test_a_single_attempt_setting_locks_at_the_first_failure(
    dbs: Session, t: Clock, lockout: Callable[..., None]
) -> None:
    make(dbs)
    lockout(attempts=1)
    assert isinstance(attempt(dbs, "alice", WRONG).error, AccountLocked)


@pytest.mark.parametrize("name", ["alice", "ghost"])
def test_the_lock_lasts_the_configured_minutes(
    dbs: Session, t: Clock, lockout: Callable[..., None], name: str
) -> None:
    make(dbs)
    lockout(attempts=3, minutes=2)
    *_, locked = (attempt(dbs, name, WRONG) for _ in range(3))
    assert str(locked.error) == "Too many failed logins: try again in 2 minutes."
    t.advance(minutes=1, seconds=59)
    assert str(attempt(dbs, name, PASSWORD).error).endswith("try again in 1 minute.")
    t.advance(seconds=2)
    assert isinstance(attempt(dbs, name, WRONG).error, AuthenticationFailed)  # open again


def test_a_lock_longer_than_the_default_outlasts_fifteen_minutes(
    dbs: Session, t: Clock, lockout: Callable[..., None]
) -> None:
    make(dbs)
    lockout(minutes=60)
    for _ in range(5):
        attempt(dbs, "alice", WRONG)
    t.advance(minutes=59)
    assert isinstance(attempt(dbs, "alice", PASSWORD).error, AccountLocked)
    t.advance(minutes=1, seconds=1)
    assert attempt(dbs, "alice", PASSWORD).ok


# --- the same bcrypt cost on every path --------------------------------------------------------


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """The bcrypt cost of each password verification login makes (a recording wrapper of
    ``passwords.verify_password``: the only way to observe that a check happened)."""
    costs: list[int | None] = []
    real = passwords.verify_password

    def recording(password: str, password_hash: str) -> bool:
        costs.append(passwords.hash_cost(password_hash))
        return real(password, password_hash)

    monkeypatch.setattr(login, "verify_password", recording)
    return costs


def _lock(dbs: Session, name: str) -> None:
    for _ in range(5):
        attempt(dbs, name, WRONG)


def _disable(dbs: Session, name: str) -> None:
    user = accounts.get_by_username(dbs, username=name)
    assert user is not None
    user.disabled = True
    dbs.commit()


REFUSALS: dict[str, tuple[Callable[[Session], None], str, str]] = {
    # case: (set-up, username tried, password tried)
    "unknown username": (lambda dbs: None, "ghost", WRONG),
    "name no account can have": (lambda dbs: None, "<script>", WRONG),
    "locked account, right password": (lambda dbs: _lock(dbs, "alice"), "alice", PASSWORD),
    "locked unknown name": (lambda dbs: _lock(dbs, "ghost"), "ghost", WRONG),
    "disabled account, right password": (lambda dbs: _disable(dbs, "alice"), "alice", PASSWORD),
    "disabled account, wrong password": (lambda dbs: _disable(dbs, "alice"), "alice", WRONG),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_every_refusal_costs_the_bcrypt_check_of_a_wrong_password(
    dbs: Session, t: Clock, verifications: list[int | None], case: str
) -> None:
    """Unknown, locked and disabled cost what a known user's wrong password costs: one
    verification at the configured cost (the dummy hash where there is no hash to check)."""
    make(dbs, "alice")
    make(dbs, "bob")
    set_up, name, password = REFUSALS[case]
    set_up(dbs)
    verifications.clear()
    assert not attempt(dbs, "bob", WRONG).ok
    wrong_password = list(verifications)
    verifications.clear()
    assert not attempt(dbs, name, password).ok
    assert verifications == wrong_password == [get_settings().bcrypt_rounds]


def test_authenticate_raises_the_same_errors(dbs: Session, t: Clock) -> None:
    make(dbs)
    assert login.authenticate(dbs, username="alice", password=PASSWORD).username == "alice"
    with pytest.raises(AuthenticationFailed):
        login.authenticate(dbs, username="alice", password=WRONG)


# --- session validity ------------------------------------------------------------------------


def issued_login(dbs: Session) -> tuple[User, datetime]:
    user = make(dbs)
    t_login = attempt(dbs, "alice", PASSWORD).issued_at
    assert t_login is not None
    return user, t_login


def valid(dbs: Session, user: User, issued: datetime) -> bool:
    dbs.expire_all()
    return accounts.session_identity(dbs, user_id=user.id, issued_at=issued) is not None


def test_a_fresh_login_is_valid(dbs: Session, t: Clock) -> None:
    user, issued = issued_login(dbs)
    assert valid(dbs, user, issued)


def test_password_change_ends_older_logins_but_not_the_new_cut_off(dbs: Session, t: Clock) -> None:
    user, issued = issued_login(dbs)
    t.advance(minutes=1)
    cutoff = accounts.change_password(
        dbs,
        user_id=user.id,
        current_password=PASSWORD,
        new_password="a brand new passphrase",
        confirm="a brand new passphrase",
    )
    dbs.commit()
    assert not valid(dbs, user, issued)
    assert valid(dbs, user, cutoff)
    assert attempt(dbs, "alice", "a brand new passphrase").ok


def test_log_out_everywhere_ends_every_login(dbs: Session, t: Clock) -> None:
    user, issued = issued_login(dbs)
    t.advance(seconds=1)
    accounts.logout_everywhere(dbs, user_id=user.id)
    dbs.commit()
    assert not valid(dbs, user, issued)


def test_disabling_ends_logins(dbs: Session, t: Clock) -> None:
    boss = make(dbs, "boss", role="admin")
    user, issued = issued_login(dbs)
    admin.set_disabled(dbs, actor_id=boss.id, user_id=user.id, disabled=True)
    dbs.commit()
    assert not valid(dbs, user, issued)


def test_role_change_ends_logins(dbs: Session, t: Clock) -> None:
    boss = make(dbs, "boss", role="admin")
    user, issued = issued_login(dbs)
    t.advance(seconds=1)
    admin.set_role(dbs, actor_id=boss.id, user_id=user.id, role="admin")
    dbs.commit()
    assert not valid(dbs, user, issued)


def test_a_login_for_a_deleted_user_is_invalid(dbs: Session, t: Clock) -> None:
    user, issued = issued_login(dbs)
    dbs.delete(user)
    dbs.commit()
    assert accounts.session_identity(dbs, user_id=user.id, issued_at=issued) is None


def test_a_cookie_username_must_match_the_user_id(dbs: Session, t: Clock) -> None:
    user, issued = issued_login(dbs)
    assert accounts.session_identity(dbs, user_id=user.id, issued_at=issued, username="ALICE")
    assert not accounts.session_identity(dbs, user_id=user.id, issued_at=issued, username="bob")


def test_setting_the_clock_back_never_revives_revoked_logins(dbs: Session, t: Clock) -> None:
    user, _ = issued_login(dbs)
    t.advance(hours=1)
    accounts.logout_everywhere(dbs, user_id=user.id)
    t.advance(hours=-2)
    accounts.logout_everywhere(dbs, user_id=user.id)
    dbs.commit()
    dbs.refresh(user)
    assert user.tokens_valid_after == T0 + timedelta(hours=1)


# --- own password change ---------------------------------------------------------------------


def test_change_password_needs_the_current_password(dbs: Session, t: Clock) -> None:
    user = make(dbs)
    with pytest.raises(InvalidInput, match="current password is wrong"):
        accounts.change_password(
            dbs,
            user_id=user.id,
            current_password=WRONG,
            new_password="a brand new passphrase",
            confirm="a brand new passphrase",
        )
    dbs.rollback()
    assert attempt(dbs, "alice", PASSWORD).ok


@pytest.mark.parametrize(
    ("new", "confirm", "message"),
    [
        ("short", "short", "at least 12"),
        ("a brand new passphrase", "a brand new passphrasE", "do not match"),
        (PASSWORD, PASSWORD, "must differ"),
        ("alice", "alice", "at least 12"),
        ("p" * 100_000, "p" * 100_000, "at most 1024"),
    ],
)
def test_change_password_applies_the_rules(
    dbs: Session, t: Clock, new: str, confirm: str, message: str
) -> None:
    user = make(dbs)
    with pytest.raises(InvalidInput, match=message):
        accounts.change_password(
            dbs, user_id=user.id, current_password=PASSWORD, new_password=new, confirm=confirm
        )
    dbs.rollback()
    assert attempt(dbs, "alice", PASSWORD).ok


@pytest.mark.parametrize("name", ["alice", "ghost"])
def test_concurrent_attempts_on_one_name_queue_alike_for_real_and_unknown_names(
    dbs: Session, t: Clock, name: str
) -> None:
    """A second attempt waits for the first (row lock held through bcrypt) in both cases, so
    queueing cannot tell a real name from an unknown one."""
    import threading

    from core import database

    make(dbs)
    first = database.get_sessionmaker()()
    login.attempt(first, username=name, password=WRONG)  # holds the row lock, not committed
    finished = threading.Event()

    def second() -> None:
        with database.session_scope() as session:
            login.attempt(session, username=name, password=WRONG)
        finished.set()

    thread = threading.Thread(target=second)
    thread.start()
    wait_until_blocked(dbs, what="the second attempt")
    assert not finished.is_set()
    first.commit()
    first.close()
    thread.join(timeout=30)
    assert finished.is_set()


def test_unknown_names_not_tried_for_thirty_days_are_forgotten_at_start(
    dbs: Session, t: Clock
) -> None:
    attempt(dbs, "oldghost", WRONG)
    t.advance(days=30, minutes=1)
    attempt(dbs, "newghost", WRONG)
    assert login.prepare_login_failures().startswith("failed logins of unknown names: 1 ")
    dbs.expire_all()
    assert [row.name for row in dbs.scalars(select(LoginFailure))] == ["newghost"]
