"""The login gate: streamlit-authenticator's login widget and cookie over Ledger's accounts.

PostgreSQL (``users``) is the only store of credentials. Each run builds an authenticator
whose credentials dict starts empty and receives one entry only when a login succeeds
(form or cookie), and four of the instance's methods are replaced:

- ``check_credentials`` -> ``core.login.attempt`` with this browser's address and device
  cookie: persisted lockouts first (per name and client), a dummy bcrypt
  hash for unknown names, the outcome recorded in PostgreSQL. Failures raise the core error
  (wrong credentials / locked / disabled), which the login page shows.
- ``get_cookie`` -> reads the cookie itself and accepts it only if ``core.cookies.read_token``
  (signature, expiry, claims) and ``core.accounts.session_identity`` (user exists, enabled,
  its login token not revoked by Logout, issued after ``tokens_valid_after``) both agree.
- ``_token_encode`` -> ``core.cookies.issue_token`` (adds the user id, the login token's id
  and the issue time); ``set_cookie`` adds the Secure flag when AUTH_COOKIE_SECURE is set.

Every run the router calls ``signed_in_identity``, which checks the session against the
database again, so revocations (Logout, password change, log out everywhere, disable, role
change) end a session at its next click, in every process.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import streamlit as st
import streamlit_authenticator as stauth
from streamlit_authenticator.utilities import LoginError

from app.page import IDENTITY_KEY, LOGIN_VIEW, drop_notice, set_notice, show_error, show_notice
from core import accounts, clock, cookies, database, login, services
from core import client_address as address
from core.accounts import Identity
from core.config import get_settings
from core.errors import LedgerError
from core.text import escape_markdown

PAGES = Path(__file__).resolve().parents[1] / "pages"

AUTH_KEY = "_ledger_auth"  # {"uid", "tid", "dev", "issued_us"}: the login behind this session
AUTHENTICATOR_KEY = "_ledger_authenticator"  # this run's authenticator, for the pages


# --- the authenticator of this run ---------------------------------------------------------


def request_cookie(name: str) -> str | None:
    """The named cookie as the browser sent it when this session connected, if any."""
    try:
        value = st.context.cookies.get(name)
    except Exception:  # no browser behind this run (bare mode)
        return None
    return value if isinstance(value, str) else None


def client_address() -> str:
    """The address the request comes from, believing X-Forwarded-For only from TRUSTED_PROXIES."""
    try:
        peer = st.context.ip_address
        forwarded = st.context.headers.get("X-Forwarded-For")
    except Exception:  # no browser behind this run (bare mode)
        return address.UNKNOWN
    return address.client_address(peer, forwarded, get_settings().trusted_networks)


def _client(username: str, key: str) -> login.Client:
    """This browser as a login client: its address, and its device cookie for ``username``."""
    device = cookies.read_device_token(
        request_cookie(get_settings().auth_cookie_name), name=username, key=key, now=clock.now()
    )
    return login.Client(address=client_address(), device=device)


def _entry(identity: Identity) -> dict[str, Any]:
    """The credentials-dict entry the library needs after a login (no password in it)."""
    return {
        "name": identity.display_name,
        "email": None,
        "roles": [identity.role],
        "password": "",
        "logged_in": False,
    }


def _remember(
    identity: Identity, token_id: uuid.UUID, device_id: uuid.UUID, issued_us: int
) -> None:
    st.session_state[AUTH_KEY] = {
        "uid": str(identity.id),
        "tid": str(token_id),
        "dev": str(device_id),
        "name": identity.username,
        "issued_us": issued_us,
    }
    st.session_state[IDENTITY_KEY] = identity


def build_authenticator() -> stauth.Authenticate:
    """This run's authenticator (one per run: its cookie component renders once per run)."""
    settings = get_settings()
    key = cookies.cookie_key(settings)
    credentials: dict[str, dict[str, Any]] = {"usernames": {}}
    authenticator = stauth.Authenticate(
        credentials,
        cookie_name=settings.auth_cookie_name,
        cookie_key=key,
        cookie_expiry_days=settings.auth_cookie_expiry_days,
        auto_hash=False,
        login_sleep_time=0,  # it only delays the form; the cookie is read from the request
    )
    model = authenticator.authentication_controller.authentication_model
    users = model.credentials["usernames"]

    def check_credentials(username: str, password: str) -> bool:
        client = _client(username, key)
        with database.session_scope() as session:  # committed whatever the outcome
            result = login.attempt(
                session,
                services.redis_client(),
                username=username,
                password=password,
                client=client,
            )
        if result.error is not None:
            raise result.error
        assert result.identity is not None and result.issued_at is not None
        assert result.token_id is not None
        users[username] = _entry(result.identity)
        device = client.device or uuid.uuid4()  # a browser new to this name gets its device id
        _remember(result.identity, result.token_id, device, cookies.to_micros(result.issued_at))
        return True

    def get_cookie() -> dict[str, Any] | bool | None:
        if st.session_state.get("logout"):
            return False  # logged out in this session: the request's cookie is stale
        raw = request_cookie(settings.auth_cookie_name)
        if raw is None:
            return None
        claims = cookies.read_token(raw, key=key, now=clock.now())
        if claims is None:
            return None
        with database.read_scope() as session:
            identity = accounts.session_identity(
                session,
                user_id=claims.user_id,
                token_id=claims.token_id,
                issued_at=claims.issued_at,
                username=claims.username,
            )
        if identity is None:
            return None
        users[claims.username] = _entry(identity)
        device = claims.device_id or uuid.uuid4()
        _remember(identity, claims.token_id, device, cookies.to_micros(claims.issued_at))
        return {"username": claims.username, "exp_date": claims.expires_at.timestamp()}

    def token_encode() -> str:
        auth = st.session_state[AUTH_KEY]
        issued = cookies.from_micros(auth["issued_us"])
        return cookies.issue_token(
            username=str(st.session_state["username"]),
            user_id=uuid.UUID(auth["uid"]),
            token_id=uuid.UUID(auth["tid"]),
            issued_at=issued,
            expires_at=issued + timedelta(days=settings.auth_cookie_expiry_days),
            key=key,
            device_id=uuid.UUID(auth["dev"]),
        )

    cookie_model = authenticator.cookie_controller.cookie_model

    def write_cookie(value: str, component_key: str) -> None:
        """Store ``value`` as the login cookie, kept by the browser for the device part's year
        (the login inside ends sooner: its own expiry, Logout, revocation). Secure when
        AUTH_COOKIE_SECURE says so; SameSite=Strict always. HttpOnly is impossible: the cookie
        is written by the browser's JavaScript (docs/security.md)."""
        cookie_model.cookie_manager.set(
            settings.auth_cookie_name,
            value,
            key=component_key,
            expires_at=datetime.now() + timedelta(days=cookies.DEVICE_DAYS),
            secure=settings.auth_cookie_secure or None,
            same_site="strict",
        )

    def set_cookie() -> None:
        cookie_model.exp_date = cookie_model._set_exp_date()
        write_cookie(token_encode(), "set")

    def delete_cookie() -> None:
        """At logout the cookie keeps only this browser's device part (no login in it), so
        its failed logins for the name still count apart from strangers' (core.login)."""
        auth = st.session_state.get(AUTH_KEY)
        if not isinstance(auth, dict) or "dev" not in auth:
            cookie_model.cookie_manager.delete(settings.auth_cookie_name)
            return
        device = cookies.issue_device_token(
            name=auth["name"], device_id=uuid.UUID(auth["dev"]), now=clock.now(), key=key
        )
        write_cookie(device, "delete")

    model.check_credentials = check_credentials
    authenticator.cookie_controller.get_cookie = get_cookie
    cookie_model._token_encode = token_encode
    cookie_model.set_cookie = set_cookie
    cookie_model.delete_cookie = delete_cookie
    st.session_state[AUTHENTICATOR_KEY] = authenticator
    return authenticator


def current_authenticator() -> stauth.Authenticate:
    authenticator = st.session_state.get(AUTHENTICATOR_KEY)
    if authenticator is None:  # a page run without the router (tests of one page)
        authenticator = build_authenticator()
    return authenticator


# --- the gate ------------------------------------------------------------------------------


def signed_in_identity(authenticator: stauth.Authenticate) -> Identity | None:
    """Who is signed in, checked against the database on this run; None for a visitor.

    A visitor with a valid cookie is signed in here without seeing the form. A session
    whose login was revoked is ended (cookie deleted) with a notice for the login page.
    """
    if not st.session_state.get("authentication_status"):
        authenticator.login(location="unrendered", max_login_attempts=None)
    if not st.session_state.get("authentication_status"):
        st.session_state.pop(IDENTITY_KEY, None)
        return None
    auth = st.session_state.get(AUTH_KEY)
    identity = None
    if isinstance(auth, dict):
        with database.read_scope() as session:
            identity = accounts.session_identity(
                session,
                user_id=uuid.UUID(auth["uid"]),
                token_id=uuid.UUID(auth["tid"]),
                issued_at=cookies.from_micros(auth["issued_us"]),
            )
    if identity is None:
        end_session(
            authenticator,
            "warning",
            "Your session has ended (logged out, password or role changed, logged out "
            "everywhere, or account disabled). Please log in again.",
        )
        return None
    st.session_state[IDENTITY_KEY] = identity
    return identity


def end_session(
    authenticator: stauth.Authenticate, kind: str = "", text: str = "", *, revoke: bool = False
) -> None:
    """Log this browser out (the library clears its state and deletes the cookie).

    ``revoke``: the user pressed Logout, so the login's token is revoked in the database too:
    a copy of the cookie taken before (another tab, a stolen file) no longer signs in.
    """
    auth = st.session_state.get(AUTH_KEY)
    if revoke and isinstance(auth, dict):
        with database.session_scope() as session:
            accounts.revoke_login_token(
                session, user_id=uuid.UUID(auth["uid"]), token_id=uuid.UUID(auth["tid"])
            )
    if st.session_state.get("authentication_status"):
        authenticator.logout(location="unrendered")
    st.session_state.pop(IDENTITY_KEY, None)
    st.session_state.pop(AUTH_KEY, None)
    if text:
        set_notice(kind, text, where=LOGIN_VIEW)


def reissue_login(at_micros: int) -> None:
    """Move this browser's login to ``at`` (after a password change) and write a new cookie."""
    auth = st.session_state.get(AUTH_KEY)
    if isinstance(auth, dict):
        auth["issued_us"] = at_micros
        current_authenticator().cookie_controller.set_cookie()


def settle_then_rerun() -> None:
    """Rerun after a login or logout, once the browser has stored (or deleted) the cookie.

    The library writes the cookie through a hidden component; an immediate st.rerun() would
    remove it before it ran (measured: cookie lost 3 times of 3). The component reports
    back when it is done, which asks Streamlit for a rerun, and Streamlit honours a pending
    rerun at the next element the script sends: so wait while touching a placeholder, and
    the wait ends as soon as the browser answers, or after LOGIN_SLEEP_TIME at most.
    """
    pause = get_settings().login_sleep_time
    if pause:
        slot = st.empty()
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline:
            time.sleep(0.05)
            slot.empty()  # a yield point: the component's rerun request takes effect here
    st.rerun()


# --- page bodies shared by several routes --------------------------------------------------


def login_view(wanted: str | None = None) -> None:
    """The login page. ``wanted`` names the page a deep link asked for: after login the
    browser stays on that URL and the page opens."""
    st.title("📒 Ledger")
    notice = st.empty()
    with notice:
        show_notice(LOGIN_VIEW)
    if wanted:
        st.info(f"Log in to open {wanted}.")
    authenticator = current_authenticator()
    try:
        authenticator.login(location="main", max_login_attempts=None, key="Login")
    except (LedgerError, LoginError) as exc:
        notice.empty()  # "You are logged out." next to "Too many failed logins" says nothing
        drop_notice()
        if isinstance(exc, LedgerError):
            show_error(exc)
        else:
            st.error(f"Login failed: {exc}")
        return
    if st.session_state.get("authentication_status"):
        st.success("Logged in.")
        settle_then_rerun()
    if get_settings().allow_registration:
        st.caption("No account yet? Use **Register** in the sidebar.")
    else:
        st.caption("Accounts are created by an administrator.")


def sidebar(authenticator: stauth.Authenticate, identity: Identity) -> None:
    """Who is signed in, and the Logout button."""
    role = " · administrator" if identity.is_admin else ""
    st.sidebar.caption(f"Signed in as **{escape_markdown(identity.display_name)}**{role}")
    if st.sidebar.button("Logout", key="Logout", icon="🚪"):
        end_session(authenticator, "success", "You are logged out.", revoke=True)
        settle_then_rerun()
