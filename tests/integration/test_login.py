"""Login, persisted lockouts that an attacker cannot aim at the owner, per-address limits and
session validity, on real PostgreSQL and Redis (time from core.clock)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import accounts, admin, clock, login, passwords, services
from core.config import get_settings
from core.errors import (
    AccountDisabled,
    AccountLocked,
    AuthenticationFailed,
    InvalidInput,
    TooManyRequests,
)
from core.models import LoginAttempt, User
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


HERE = login.Client()  # the address every attempt below comes from, unless a test says
ADDRESS = f"addr:{login.LOCAL}"


def attempt(
    dbs: Session, name: str, password: str, client: login.Client = HERE
) -> login.LoginResult:
    result = login.attempt(
        dbs, services.redis_client(), username=name, password=password, client=client
    )
    dbs.commit()
    return result


def rows(dbs: Session, name: str) -> dict[str, tuple[int, datetime | None]]:
    """The name's attempt rows: client -> (failures in a row, locked until)."""
    dbs.expire_all()
    found = dbs.scalars(select(LoginAttempt).where(LoginAttempt.name == name.lower()))
    return {row.client: (row.failed, row.locked_until) for row in found}


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
    make(dbs)
    for _ in range(3):
        attempt(dbs, "alice", WRONG)
    assert rows(dbs, "alice") == {ADDRESS: (3, None), login.UNTRUSTED: (3, None)}
    assert attempt(dbs, "alice", PASSWORD).ok
    # The address's own count starts again; the count shared by every new browser does not
    # (a success from one address must not give guessers elsewhere a fresh allowance).
    assert rows(dbs, "alice") == {ADDRESS: (0, None), login.UNTRUSTED: (3, None)}


def test_fifth_failure_locks_for_fifteen_minutes(dbs: Session, t: Clock) -> None:
    user = make(dbs)
    locks = lockouts()
    results = [attempt(dbs, "alice", WRONG) for _ in range(5)]
    assert all(isinstance(r.error, AuthenticationFailed) for r in results[:4])
    assert isinstance(results[4].error, AccountLocked)
    assert "try again in 15 minutes" in str(results[4].error)
    assert lockouts() == locks + 1
    assert rows(dbs, user.username)[ADDRESS] == (5, T0 + timedelta(minutes=15))


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
    make(dbs)
    for _ in range(5):
        attempt(dbs, "alice", WRONG)
    t.advance(minutes=15, seconds=1)
    assert isinstance(attempt(dbs, "alice", WRONG).error, AuthenticationFailed)
    assert rows(dbs, "alice")[ADDRESS] == (1, None)
    assert attempt(dbs, "alice", PASSWORD).ok


def test_unknown_names_lock_exactly_like_real_ones(dbs: Session, t: Clock) -> None:
    make(dbs)
    real = [str(attempt(dbs, "alice", WRONG).error) for _ in range(6)]
    ghost = [str(attempt(dbs, "ghost", WRONG).error) for _ in range(6)]
    assert real == ghost
    assert "Too many failed logins" in ghost[-1]
    assert rows(dbs, "ghost")[ADDRESS] == (5, T0 + timedelta(minutes=15))
    assert rows(dbs, "alice").keys() == rows(dbs, "ghost").keys()


def test_unknown_name_lock_also_expires(dbs: Session, t: Clock) -> None:
    for _ in range(5):
        attempt(dbs, "ghost", WRONG)
    t.advance(minutes=16)
    assert isinstance(attempt(dbs, "ghost", WRONG).error, AuthenticationFailed)


def test_names_no_account_can_have_are_not_stored(dbs: Session, t: Clock) -> None:
    for name in ["x", "robert'); DROP TABLE users;--", "<script>", "李雷", "a" * 100_000]:
        assert isinstance(attempt(dbs, name, WRONG).error, AuthenticationFailed)
    assert dbs.scalar(select(func.count()).select_from(LoginAttempt)) == 0


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
    assert rows(dbs, "alice")[ADDRESS] == (1, None)
    assert passwords.verify_password(PASSWORD, user.password_hash)


@pytest.mark.parametrize(
    "name", ["alice' OR '1'='1", "alice'--", "<b>alice</b>", "ålice", "alice\x00"]
)
def test_injection_in_the_username_matches_nobody(dbs: Session, t: Clock, name: str) -> None:
    make(dbs)
    assert isinstance(attempt(dbs, name, PASSWORD).error, AuthenticationFailed)
    assert rows(dbs, "alice") == {}
    assert dbs.scalar(select(func.count()).select_from(User)) == 1


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
    assert (
        login.authenticate(
            dbs, services.redis_client(), username="alice", password=PASSWORD
        ).username
        == "alice"
    )
    with pytest.raises(AuthenticationFailed):
        login.authenticate(dbs, services.redis_client(), username="alice", password=WRONG)


# --- session validity ------------------------------------------------------------------------


TOKENS: dict[datetime, uuid.UUID] = {}  # issued_at -> the login token issued then


def issued_login(dbs: Session, name: str = "alice") -> tuple[User, datetime]:
    user = make(dbs, name)
    result = attempt(dbs, name, PASSWORD)
    assert result.issued_at is not None and result.token_id is not None
    TOKENS[result.issued_at] = result.token_id
    return user, result.issued_at


def valid(dbs: Session, user: User, issued: datetime, token: uuid.UUID | None = None) -> bool:
    dbs.expire_all()
    token = token or TOKENS[issued]
    identity = accounts.session_identity(dbs, user_id=user.id, token_id=token, issued_at=issued)
    return identity is not None


def test_a_fresh_login_is_valid(dbs: Session, t: Clock) -> None:
    user, issued = issued_login(dbs)
    assert valid(dbs, user, issued)


def test_logout_ends_that_login_and_a_copy_of_its_cookie_but_no_other(
    dbs: Session, t: Clock
) -> None:
    """A cookie copied before Logout carries the same token id: revoked, it signs in no more.
    The user's other browsers (other logins) stay signed in."""
    user, issued = issued_login(dbs)
    other = attempt(dbs, "alice", PASSWORD)
    assert other.token_id is not None and other.token_id != TOKENS[issued]
    accounts.revoke_login_token(dbs, user_id=user.id, token_id=TOKENS[issued])
    dbs.commit()
    assert not valid(dbs, user, issued)
    assert valid(dbs, user, issued, other.token_id)


def test_another_users_token_or_an_unknown_one_is_no_login(dbs: Session, t: Clock) -> None:
    alice, issued = issued_login(dbs)
    t.advance(seconds=1)
    bob, _ = issued_login(dbs, "bob")
    assert not valid(dbs, bob, issued, TOKENS[issued])  # alice's token with bob's id
    assert not valid(dbs, alice, issued, uuid.uuid4())
    accounts.revoke_login_token(dbs, user_id=bob.id, token_id=TOKENS[issued])  # not bob's
    dbs.commit()
    assert valid(dbs, alice, issued)


def test_an_expired_login_token_is_no_login(dbs: Session, t: Clock) -> None:
    user, issued = issued_login(dbs)
    t.advance(days=get_settings().auth_cookie_expiry_days, seconds=1)
    assert not valid(dbs, user, issued)
    t.advance(days=1)
    assert accounts.prune_login_tokens(dbs) == 1


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
    assert valid(dbs, user, cutoff, TOKENS[issued])  # this browser's login, moved to the cut-off
    assert attempt(dbs, "alice", "a brand new passphrase").ok


def test_log_out_everywhere_ends_every_login(dbs: Session, t: Clock) -> None:
    user, issued = issued_login(dbs)
    t.advance(seconds=1)
    accounts.logout_everywhere(dbs, user_id=user.id)
    dbs.commit()
    assert not valid(dbs, user, issued)
    assert not valid(dbs, user, T0 + timedelta(hours=1), TOKENS[issued])  # its token is revoked


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
    token = TOKENS[issued]
    dbs.delete(user)
    dbs.commit()
    found = accounts.session_identity(dbs, user_id=user.id, token_id=token, issued_at=issued)
    assert found is None


def test_a_cookie_username_must_match_the_user_id(dbs: Session, t: Clock) -> None:
    user, issued = issued_login(dbs)
    token = TOKENS[issued]
    identity = partial(accounts.session_identity, dbs, user_id=user.id, token_id=token)
    assert identity(issued_at=issued, username="ALICE")
    assert not identity(issued_at=issued, username="bob")


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
    r = services.redis_client()
    login.attempt(first, r, username=name, password=WRONG)  # holds the row locks, uncommitted
    finished = threading.Event()

    def second() -> None:
        with database.session_scope() as session:
            login.attempt(session, r, username=name, password=WRONG)
        finished.set()

    thread = threading.Thread(target=second)
    thread.start()
    wait_until_blocked(dbs, what="the second attempt")
    assert not finished.is_set()
    first.commit()
    first.close()
    thread.join(timeout=30)
    assert finished.is_set()


def test_attempts_not_made_for_thirty_days_are_forgotten_at_start(dbs: Session, t: Clock) -> None:
    attempt(dbs, "oldghost", WRONG)
    t.advance(days=30, minutes=1)
    attempt(dbs, "newghost", WRONG)
    assert login.prepare_login_records().startswith("login records: 2 failed-login rows ")
    dbs.expire_all()
    assert {row.name for row in dbs.scalars(select(LoginAttempt))} == {"newghost"}


# --- lockouts an attacker cannot aim at the owner ----------------------------------------------

ATTACKER = login.Client(address="203.0.113.66")
OWNER = login.Client(address="198.51.100.7")


def test_failures_from_one_address_lock_that_address_only(dbs: Session, t: Clock) -> None:
    make(dbs)
    results = [attempt(dbs, "alice", WRONG, ATTACKER) for _ in range(5)]
    assert str(results[-1].error) == "Too many failed logins: try again in 15 minutes."
    assert isinstance(attempt(dbs, "alice", PASSWORD, ATTACKER).error, AccountLocked)
    assert attempt(dbs, "alice", PASSWORD, OWNER).ok


@pytest.fixture
def untrusted_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setenv("LOGIN_UNTRUSTED_MAX_FAILURES", "10")
    get_settings.cache_clear()
    yield 10
    get_settings.cache_clear()


def guess_from_many_addresses(dbs: Session, name: str, failures: int) -> None:
    """``failures`` wrong passwords, four from each address (none of them locks itself)."""
    for n in range(failures):
        attempt(dbs, name, WRONG, login.Client(address=f"192.0.2.{n // 4}"))


@pytest.mark.parametrize("name", ["alice", "ghost"])
def test_guessing_from_many_addresses_locks_the_name_for_new_browsers(
    dbs: Session, t: Clock, untrusted_limit: int, name: str
) -> None:
    make(dbs)
    guess_from_many_addresses(dbs, name, untrusted_limit)
    refused = attempt(dbs, name, PASSWORD if name == "alice" else WRONG, OWNER)
    assert isinstance(refused.error, AccountLocked)
    assert "log in from a browser you have used before" in str(refused.error)
    assert rows(dbs, name)[login.UNTRUSTED] == (untrusted_limit, T0 + timedelta(minutes=15))


def test_a_browser_that_signed_in_before_still_gets_in_when_the_name_is_locked(
    dbs: Session, t: Clock, untrusted_limit: int
) -> None:
    make(dbs)
    trusted = login.Client(address=OWNER.address, device=uuid.uuid4())
    guess_from_many_addresses(dbs, "alice", untrusted_limit)
    assert isinstance(attempt(dbs, "alice", PASSWORD, OWNER).error, AccountLocked)
    assert attempt(dbs, "alice", PASSWORD, trusted).ok


def test_a_devices_failures_lock_that_device_only(dbs: Session, t: Clock) -> None:
    make(dbs)
    stolen = login.Client(address=ATTACKER.address, device=uuid.uuid4())
    for _ in range(5):
        attempt(dbs, "alice", WRONG, stolen)
    assert isinstance(attempt(dbs, "alice", PASSWORD, stolen).error, AccountLocked)
    assert attempt(dbs, "alice", PASSWORD, OWNER).ok
    assert login.UNTRUSTED not in rows(dbs, "alice") or rows(dbs, "alice")[login.UNTRUSTED][0] == 0


def test_the_untrusted_count_covers_one_lockout_period_not_forever(
    dbs: Session, t: Clock, untrusted_limit: int
) -> None:
    make(dbs)
    guess_from_many_addresses(dbs, "alice", untrusted_limit - 1)
    t.advance(minutes=16)
    attempt(dbs, "alice", WRONG, ATTACKER)
    assert rows(dbs, "alice")[login.UNTRUSTED] == (1, None)


def test_an_admin_unlock_lifts_every_lock_of_the_name(
    dbs: Session, t: Clock, untrusted_limit: int
) -> None:
    boss = make(dbs, "boss", role="admin")
    user = make(dbs)
    guess_from_many_addresses(dbs, "alice", untrusted_limit)
    assert login.lock_of(dbs, name="alice") == T0 + timedelta(minutes=15)
    admin.unlock(dbs, actor_id=boss.id, user_id=user.id)
    dbs.commit()
    assert rows(dbs, "alice") == {} and login.lock_of(dbs, name="alice") is None
    assert attempt(dbs, "alice", PASSWORD, OWNER).ok


# --- limits per address --------------------------------------------------------------------


def test_an_address_with_too_many_failures_waits_whatever_name_it_tries(
    dbs: Session, t: Clock
) -> None:
    make(dbs)
    limit = get_settings().login_address_max_failures
    for n in range(limit):
        attempt(dbs, f"ghost{n}", WRONG, ATTACKER)
    written = dbs.scalar(select(func.count()).select_from(LoginAttempt))
    refused = attempt(dbs, "alice", PASSWORD, ATTACKER)
    assert refused.outcome == "throttled"
    assert (
        str(refused.error) == "Too many failed logins from your network: try again in 15 minutes."
    )
    assert attempt(dbs, "alice", PASSWORD, OWNER).ok  # another address is not held back
    for n in range(50):  # what an address keeps trying writes nothing more
        attempt(dbs, f"phantom{n}", WRONG, ATTACKER)
    # ...while the owner's own login wrote its address's row and alice's untrusted row.
    assert dbs.scalar(select(func.count()).select_from(LoginAttempt)) == written + 2
    t.advance(minutes=15)
    assert attempt(dbs, "alice", PASSWORD, ATTACKER).ok  # the next window opens


def test_rows_for_unknown_names_are_capped_per_address(dbs: Session, t: Clock) -> None:
    """Two rows a name (the address's and the untrusted one), for at most
    LOGIN_ADDRESS_MAX_FAILURES names per address and period."""
    limit = get_settings().login_address_max_failures
    for n in range(limit * 5):
        attempt(dbs, f"name{n}", WRONG, ATTACKER)
    assert dbs.scalar(select(func.count()).select_from(LoginAttempt)) == 2 * limit


def register(dbs: Session, n: int, address: str) -> None:
    accounts.register(
        dbs,
        services.redis_client(),
        address=address,
        username=f"newbie{n}",
        email=f"newbie{n}@example.com",
        display_name=f"Newbie {n}",
        password=PASSWORD,
        password_confirm=PASSWORD,
    )
    dbs.commit()


def test_registrations_per_address_are_limited_per_hour(dbs: Session, t: Clock) -> None:
    limit = get_settings().registration_address_max
    for n in range(limit):
        register(dbs, n, ATTACKER.address)
    with pytest.raises(TooManyRequests, match="registered from your network: try again in 60"):
        register(dbs, limit, ATTACKER.address)
    dbs.rollback()
    assert accounts.get_by_username(dbs, username=f"newbie{limit}") is None
    register(dbs, limit, OWNER.address)
    t.advance(hours=1)
    register(dbs, limit + 1, ATTACKER.address)
