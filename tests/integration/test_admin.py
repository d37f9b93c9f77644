"""Administrators' actions: checked in core, never leaving the system without an admin."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy.orm import Session

from core import accounts, admin, database, login, services, usage_log
from core.errors import Conflict, Forbidden, LedgerError
from tests.support.locks import wait_until_blocked
from tests.support.people import PASSWORD, make_user

make = partial(make_user, commit=True)  # committed: other connections see it


def call(dbs: Session, fn: Callable[..., Any], **kwargs: Any) -> Any:
    result = fn(dbs, **kwargs)
    dbs.commit()
    return result


def test_list_shows_every_user_with_usage_totals(dbs: Session) -> None:
    boss, alice = make(dbs, "boss", "admin"), make(dbs, "alice")
    for prompt, completion in [(10, 20), (5, 7)]:
        usage_log.record_call(
            dbs,
            user_id=alice.id,
            session_id=None,
            model="m",
            backend="ollama",
            prompt_tokens=prompt,
            completion_tokens=completion,
            ttft_ms=1.0,
            duration_ms=2.0,
            outcome="ok",
        )
    dbs.commit()
    rows = {row.username: row for row in admin.list_users(dbs, actor_id=boss.id)}
    assert (rows["alice"].requests, rows["alice"].tokens) == (2, 42)
    assert (rows["boss"].requests, rows["boss"].tokens) == (0, 0)
    assert rows["boss"].role == "admin" and rows["alice"].last_login_at is None


@pytest.mark.parametrize(
    ("fn", "kwargs"),
    [
        (admin.list_users, {}),
        (admin.set_disabled, {"disabled": True}),
        (admin.set_role, {"role": "admin"}),
        (admin.reset_password, {}),
        (admin.unlock, {}),
    ],
)
def test_every_admin_action_refuses_a_non_admin(
    dbs: Session, fn: Callable[..., Any], kwargs: dict[str, Any]
) -> None:
    make(dbs, "boss", "admin")
    alice, bob = make(dbs, "alice"), make(dbs, "bob")
    if fn is not admin.list_users:
        kwargs = {**kwargs, "user_id": bob.id}
    with pytest.raises(Forbidden, match="Only administrators"):
        fn(dbs, actor_id=alice.id, **kwargs)
    dbs.rollback()
    dbs.expire_all()
    assert (bob.role, bob.disabled) == ("user", False)


def test_a_disabled_admin_can_no_longer_act(dbs: Session) -> None:
    boss, other = make(dbs, "boss", "admin"), make(dbs, "other", "admin")
    call(dbs, admin.set_disabled, actor_id=other.id, user_id=boss.id, disabled=True)
    with pytest.raises(Forbidden):
        admin.list_users(dbs, actor_id=boss.id)


def test_the_last_admin_cannot_be_demoted(dbs: Session) -> None:
    boss = make(dbs, "boss", "admin")
    with pytest.raises(Conflict, match="last enabled administrator"):
        admin.set_role(dbs, actor_id=boss.id, user_id=boss.id, role="user")
    dbs.rollback()
    dbs.refresh(boss)
    assert boss.role == "admin"


def test_an_admin_cannot_disable_their_own_account(dbs: Session) -> None:
    """The actor is an enabled admin and never the target, so disabling cannot remove the
    last enabled admin: this refusal is what keeps one."""
    boss = make(dbs, "boss", "admin")
    with pytest.raises(Conflict, match="cannot disable your own"):
        admin.set_disabled(dbs, actor_id=boss.id, user_id=boss.id, disabled=True)
    dbs.rollback()
    assert admin.count_enabled_admins(dbs) == 1


def test_an_admin_demoted_while_their_action_waits_is_refused(dbs: Session) -> None:
    """bert demotes anna (uncommitted, holding the admin rows) while anna, still an admin
    when she started, disables bert: anna waits, then is refused as the user she now is,
    and bert stays the enabled admin."""
    anna, bert = make(dbs, "anna", "admin"), make(dbs, "bert", "admin")
    demoting = database.get_sessionmaker()()
    admin.set_role(demoting, actor_id=bert.id, user_id=anna.id, role="user")
    outcome: list[str] = []

    def disable_bert() -> None:
        try:
            with database.session_scope() as session:
                admin.set_disabled(session, actor_id=anna.id, user_id=bert.id, disabled=True)
            outcome.append("ok")
        except LedgerError as exc:
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=disable_bert)
    thread.start()
    wait_until_blocked(dbs, what="anna's action")
    demoting.commit()
    demoting.close()
    thread.join(timeout=30)
    assert outcome == ["Forbidden"]
    dbs.expire_all()
    assert (bert.role, bert.disabled, anna.role) == ("admin", False, "user")


def test_a_second_admin_can_be_demoted(dbs: Session) -> None:
    boss, other = make(dbs, "boss", "admin"), make(dbs, "other", "admin")
    call(dbs, admin.set_role, actor_id=boss.id, user_id=other.id, role="user")
    dbs.refresh(other)
    assert other.role == "user"


def test_a_disabled_admin_does_not_count_as_the_remaining_admin(dbs: Session) -> None:
    boss, other = make(dbs, "boss", "admin"), make(dbs, "other", "admin")
    call(dbs, admin.set_disabled, actor_id=boss.id, user_id=other.id, disabled=True)
    with pytest.raises(Conflict, match="last enabled administrator"):
        admin.set_role(dbs, actor_id=boss.id, user_id=boss.id, role="user")


def test_two_admins_demoting_each_other_at_once_leave_one_admin(dbs: Session) -> None:
    a, b = make(dbs, "anna", "admin"), make(dbs, "bert", "admin")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(actor: uuid.UUID, target: uuid.UUID) -> None:
        barrier.wait()
        try:
            with database.session_scope() as session:
                admin.set_role(session, actor_id=actor, user_id=target, role="user")
            outcomes.append("ok")
        except LedgerError as exc:
            outcomes.append(type(exc).__name__)

    threads = [
        threading.Thread(target=demote, args=(a.id, b.id)),
        threading.Thread(target=demote, args=(b.id, a.id)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["Forbidden", "ok"]  # the one who waited is no admin now
    assert admin.count_enabled_admins(dbs) == 1


def test_reset_password_gives_a_one_time_password_that_must_be_changed(dbs: Session) -> None:
    boss, alice = make(dbs, "boss", "admin"), make(dbs, "alice")
    one_time = call(dbs, admin.reset_password, actor_id=boss.id, user_id=alice.id)
    assert not login.attempt(dbs, services.redis_client(), username="alice", password=PASSWORD).ok
    result = login.attempt(dbs, services.redis_client(), username="alice", password=one_time)
    assert result.ok and result.identity is not None and result.identity.must_change_password
    dbs.commit()
    accounts.change_password(
        dbs, user_id=alice.id, current_password=one_time, new_password="mine again, longer",
        confirm="mine again, longer",
    )  # fmt: skip
    dbs.commit()
    dbs.refresh(alice)
    assert not alice.must_change_password


def test_an_admin_resets_their_own_password_on_the_account_page(dbs: Session) -> None:
    boss = make(dbs, "boss", "admin")
    with pytest.raises(Conflict, match="Account page"):
        admin.reset_password(dbs, actor_id=boss.id, user_id=boss.id)


def test_reset_password_lifts_a_lockout(dbs: Session) -> None:
    boss, alice = make(dbs, "boss", "admin"), make(dbs, "alice")
    for _ in range(5):
        login.attempt(dbs, services.redis_client(), username="alice", password="wrong wrong wrong")
    dbs.commit()
    one_time = call(dbs, admin.reset_password, actor_id=boss.id, user_id=alice.id)
    assert login.attempt(dbs, services.redis_client(), username="alice", password=one_time).ok


def test_unlock_lifts_a_lockout(dbs: Session) -> None:
    boss, alice = make(dbs, "boss", "admin"), make(dbs, "alice")
    for _ in range(5):
        login.attempt(dbs, services.redis_client(), username="alice", password="wrong wrong wrong")
    dbs.commit()
    assert not login.attempt(dbs, services.redis_client(), username="alice", password=PASSWORD).ok
    call(dbs, admin.unlock, actor_id=boss.id, user_id=alice.id)
    assert login.attempt(dbs, services.redis_client(), username="alice", password=PASSWORD).ok


def test_enable_after_disable_allows_login_again(dbs: Session) -> None:
    boss, alice = make(dbs, "boss", "admin"), make(dbs, "alice")
    call(dbs, admin.set_disabled, actor_id=boss.id, user_id=alice.id, disabled=True)
    assert not login.attempt(dbs, services.redis_client(), username="alice", password=PASSWORD).ok
    call(dbs, admin.set_disabled, actor_id=boss.id, user_id=alice.id, disabled=False)
    assert login.attempt(dbs, services.redis_client(), username="alice", password=PASSWORD).ok


def test_an_unknown_role_is_refused(dbs: Session) -> None:
    boss, alice = make(dbs, "boss", "admin"), make(dbs, "alice")
    with pytest.raises(LedgerError, match="Role must be one of"):
        admin.set_role(dbs, actor_id=boss.id, user_id=alice.id, role="superuser")
