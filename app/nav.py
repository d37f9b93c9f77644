"""Which pages exist for whom: plain data (tested without Streamlit), then st.Page objects.

A visitor sees Login and Register. Every gated URL is also registered for visitors, hidden,
as a page that shows the login form: a deep link (/usage) keeps its URL, and the rerun after
login opens the real page there. (Unregistered, it would fall back to / and be lost.)
Signed-in users see Chat, Sessions, Data, Documents, Usage and Account, admins also Admin and
Status; a non-admin's /admin and /status answer with a refusal; /login and /register lead home.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import streamlit as st

from app import auth
from app.page import require_admin
from core.accounts import Identity

Kind = Literal["file", "login", "home", "admins_only"]


@dataclass(frozen=True)
class PageSpec:
    title: str
    url_path: str
    icon: str | None = None
    file: str | None = None  # in pages/; None for the small built-in pages below
    kind: Kind = "file"
    visible: bool = True
    default: bool = False


LOGIN = PageSpec("Login", "login", "🔑", "login.py", default=True)
REGISTER = PageSpec("Register", "register", "📝", "register.py")
MEMBER = [
    PageSpec("Chat", "chat", "💬", "chat.py"),
    PageSpec("Sessions", "sessions", "🗂️", "sessions.py"),
    PageSpec("Data", "data", "🧮", "data.py"),
    PageSpec("Documents", "documents", "📄", "documents.py"),
    PageSpec("Usage", "usage", "📊", "usage.py"),
    PageSpec("Account", "account", "👤", "account.py"),
]
ADMIN = [
    PageSpec("Admin", "admin", "🛡️", "admin.py"),
    PageSpec("Status", "status", "🩺", "status.py"),
]
ADMIN_SECTION = "Administration"


def _hidden(spec: PageSpec, kind: Kind) -> PageSpec:
    return PageSpec(spec.title, spec.url_path, kind=kind, visible=False)


def visitor_spec(*, allow_registration: bool) -> dict[str, list[PageSpec]]:
    pages = [LOGIN, REGISTER] if allow_registration else [LOGIN]
    pages += [_hidden(spec, "login") for spec in MEMBER + ADMIN]
    return {"": pages}


def member_spec(identity: Identity) -> dict[str, list[PageSpec]]:
    account = next(spec for spec in MEMBER if spec.url_path == "account")
    if identity.must_change_password:  # one-time password: nothing else until it is replaced
        return {"": [replace(account, default=True)]}
    main = [replace(MEMBER[0], default=True), *MEMBER[1:]]
    main += [_hidden(LOGIN, "home"), _hidden(REGISTER, "home")]
    if not identity.is_admin:
        return {"": main + [_hidden(spec, "admins_only") for spec in ADMIN]}
    return {"": main, ADMIN_SECTION: list(ADMIN)}


def visible_titles(spec: dict[str, list[PageSpec]]) -> list[str]:
    return [page.title for pages in spec.values() for page in pages if page.visible]


# --- st.Page objects -----------------------------------------------------------------------


def build(spec: dict[str, list[PageSpec]]) -> dict[str, list[st.Page]]:
    home: list[st.Page] = []

    def go_home() -> None:
        st.switch_page(home[0])

    def admins_only() -> None:
        require_admin()  # a non-admin: shows the refusal and stops

    def login_for(title: str) -> Callable[[], None]:
        def login_first() -> None:
            auth.login_view(wanted=title)

        return login_first

    def make(page: PageSpec) -> st.Page:
        if page.kind == "file" and page.file:
            target = auth.PAGES / page.file
            return st.Page(
                target, title=page.title, icon=page.icon, url_path=page.url_path,
                default=page.default, visibility="visible" if page.visible else "hidden",
            )  # fmt: skip
        fn = {"home": go_home, "admins_only": admins_only}.get(page.kind) or login_for(page.title)
        return st.Page(fn, title=page.title, url_path=page.url_path, visibility="hidden")

    built: dict[str, list[st.Page]] = {}
    for section, pages in spec.items():
        built[section] = []
        for page in pages:
            built[section].append(made := make(page))
            if page.default:
                home.append(made)
    return built
