"""Which pages each kind of visitor is shown (app/nav.py, plain data)."""

from __future__ import annotations

import uuid

from app import nav
from core.accounts import Identity


def who(role: str = "user", must_change: bool = False) -> Identity:
    return Identity(uuid.uuid4(), "alice", "Alice", role, must_change)


def test_a_visitor_sees_login_and_register() -> None:
    assert nav.visible_titles(nav.visitor_spec(allow_registration=True)) == ["Login", "Register"]


def test_without_registration_a_visitor_sees_only_login() -> None:
    assert nav.visible_titles(nav.visitor_spec(allow_registration=False)) == ["Login"]


def test_every_gated_url_exists_for_visitors_as_a_hidden_login_form() -> None:
    hidden = [p for p in nav.visitor_spec(allow_registration=True)[""] if not p.visible]
    assert {p.url_path for p in hidden} == {p.url_path for p in nav.MEMBER + nav.ADMIN}
    assert {p.kind for p in hidden} == {"login"}


def test_a_user_sees_the_six_member_pages_and_no_admin_pages() -> None:
    spec = nav.member_spec(who())
    assert nav.visible_titles(spec) == ["Chat", "Sessions", "Data", "Documents", "Usage", "Account"]
    refusals = {p.url_path for p in spec[""] if p.kind == "admins_only"}
    assert refusals == {"admin", "status"}


def test_an_admin_also_sees_admin_and_status() -> None:
    spec = nav.member_spec(who("admin"))
    assert nav.visible_titles(spec) == [
        "Chat",
        "Sessions",
        "Data",
        "Documents",
        "Usage",
        "Account",
        "Admin",
        "Status",
    ]
    assert [p.title for p in spec[nav.ADMIN_SECTION]] == ["Admin", "Status"]


def test_chat_is_home_after_login() -> None:
    defaults = [p.title for pages in nav.member_spec(who()).values() for p in pages if p.default]
    assert defaults == ["Chat"]


def test_a_one_time_password_leaves_only_the_account_page() -> None:
    spec = nav.member_spec(who("admin", must_change=True))
    assert nav.visible_titles(spec) == ["Account"]
