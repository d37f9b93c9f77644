"""Fixtures for AppTest of single pages: identity, downloads, the sidebar, the cookie jar
(helpers in tests/support/apptest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.Navigation_pb2 import Navigation
from streamlit.runtime.forward_msg_queue import ForwardMsgQueue
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from core.accounts import Identity
from tests.support.apptest import ROOT, Sidebar


@pytest.fixture
def page(services_env: None) -> Callable[[str, Identity], AppTest]:
    """``page("usage", identity)``: an AppTest of pages/<name>.py signed in as identity."""

    def make(name: str, identity: Identity) -> AppTest:
        at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=60)
        at.session_state["identity"] = identity
        return at

    return make


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, tuple[object, str | None]]]:
    """What each download button would deliver, by the id its proto carries: (bytes, file
    name) for data given at once, (the callable, file name) for data built on click.

    AppTest keeps download data in an in-memory media manager that it drops after each run;
    this records what goes in, leaving Streamlit's behaviour unchanged."""
    seen: dict[str, tuple[object, str | None]] = {}
    original = MemoryMediaFileStorage.load_and_get_id
    original_deferred = MediaFileManager.add_deferred

    def record(self, path_or_data, mimetype, kind, filename=None):  # type: ignore[no-untyped-def]
        file_id = original(self, path_or_data, mimetype, kind, filename)
        seen[file_id] = (path_or_data, filename)
        return file_id

    def record_deferred(self, data_callable, mimetype, coordinates, file_name=None, **kw):  # type: ignore[no-untyped-def]
        file_id = original_deferred(self, data_callable, mimetype, coordinates, file_name, **kw)
        seen[file_id] = (data_callable, file_name)
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    monkeypatch.setattr(MediaFileManager, "add_deferred", record_deferred)
    yield seen


@pytest.fixture
def sidebar() -> Iterator[Sidebar]:
    """Records the Navigation message each run sends (AppTest's element tree has only the
    pages' elements, not the sidebar's page links), through Streamlit's own queue hook."""
    recorded = Sidebar()

    def record(msg: ForwardMsg) -> None:
        if msg.HasField("navigation"):
            copy = Navigation()
            copy.CopyFrom(msg.navigation)
            recorded.sent.append(copy)

    ForwardMsgQueue.on_before_enqueue_msg(record)
    yield recorded
    ForwardMsgQueue.on_before_enqueue_msg(None)


@pytest.fixture
def jar(clean_state: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The browser's cookies as sent when a session connects (empty: a new browser).

    AppTest cannot send cookies: ``app.auth.request_cookie`` reads this dict instead."""
    import streamlit as st

    from app import auth

    st.cache_resource.clear()
    st.cache_data.clear()
    cookies_sent: dict[str, str] = {}
    monkeypatch.setattr(auth, "request_cookie", lambda name: cookies_sent.get(name))
    yield cookies_sent
