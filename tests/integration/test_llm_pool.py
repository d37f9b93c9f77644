"""A pool of Ollama hosts (OLLAMA_HOSTS) against two real HTTP servers speaking Ollama's
protocol: least busy first, failover before the first token, a host marked down and tried
again later, and what is said when none answers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy.orm import Session

from core import chat, database, history, llm
from core.config import Settings, get_settings
from core.errors import LLMError, LLMUnavailable, ModelNotFound
from core.llm import pool
from tests.support.fake_ollama import FakeOllama
from tests.support.people import make_user


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hosts() -> Iterator[tuple[FakeOllama, FakeOllama]]:
    with FakeOllama() as first, FakeOllama() as second:
        first.script(reply="from one")
        second.script(reply="from two")
        yield first, second


def make_pool(*servers: FakeOllama, clock: Clock | None = None) -> llm.OllamaPool:
    members = [
        llm.OllamaBackend(
            host=s.url, default_model="llama3.2:3b", connect_timeout=1, read_timeout=5,
            fallback_context=2048,
        )
        for s in servers
    ]  # fmt: skip
    return llm.OllamaPool(members, clock=clock or Clock())


def reply(backend: llm.Backend) -> str:
    return llm.collect(backend.stream_chat([{"role": "user", "content": "hi"}])).text


def test_settings_make_a_pool_from_ollama_hosts(hosts: tuple[FakeOllama, FakeOllama]) -> None:
    one, two = hosts
    settings = Settings(llm_backend="ollama", ollama_hosts=f" {one.url}/ , {two.url}")
    assert settings.ollama_host_list == [one.url, two.url]
    llm.reset()
    backend = llm.get_backend(settings)
    assert isinstance(backend, llm.OllamaPool)
    assert backend.label == f"Ollama pool ({one.url}, {two.url})"
    assert Settings(llm_backend="ollama").ollama_host_list == [Settings().ollama_host]
    for bad in ("ftp://x", f"{one.url},{one.url}"):
        with pytest.raises(ValueError):
            Settings(ollama_hosts=bad)
    llm.reset()


def test_replies_go_to_the_least_busy_host(hosts: tuple[FakeOllama, FakeOllama]) -> None:
    one, two = hosts
    backend = make_pool(one, two)
    assert reply(backend) == "from one"  # both idle: the first listed
    one.script(reply="slow", hold=0)
    held = backend.stream_chat([{"role": "user", "content": "long"}])
    worker = threading.Thread(target=lambda: list(held))
    worker.start()
    one.wait_held()
    try:
        assert [s.busy for s in backend.states()] == [1, 0]
        assert reply(backend) == "from two"  # one is busy
    finally:
        one.release()
        worker.join(10)
    assert [s.busy for s in backend.states()] == [0, 0]


def test_a_host_that_refuses_is_skipped_marked_down_and_tried_again_later(
    hosts: tuple[FakeOllama, FakeOllama],
) -> None:
    one, two = hosts
    clock = Clock()
    backend = make_pool(one, two, clock=clock)
    one.stop()
    assert reply(backend) == "from two"  # the analyst sees nothing of the failover
    first = backend.states()[0]
    assert not first.up(clock.now) and "not reachable" in (first.last_error or "")
    asked = len(two.requests)
    assert reply(backend) == "from two" and len(two.requests) == asked + 1
    one.start()  # back on the same port
    clock.now += pool.DOWN_SECONDS - 1
    assert reply(backend) == "from two"  # still marked down
    clock.now += 2
    assert reply(backend) == "from one"  # retried, and up again
    assert backend.states()[0].up(clock.now) and backend.states()[0].last_error is None


def test_a_host_without_the_model_passes_the_reply_on(hosts: tuple[FakeOllama, FakeOllama]) -> None:
    one, two = hosts
    one.models = ("other:1b",)
    backend = make_pool(one, two)
    assert reply(backend) == "from two"
    assert backend.states()[0].up(1000.0)  # missing a model is not being down
    two.models = ("other:1b",)
    with pytest.raises(ModelNotFound):
        reply(backend)


def test_a_host_failing_mid_reply_ends_that_reply_and_the_next_goes_elsewhere(
    hosts: tuple[FakeOllama, FakeOllama],
) -> None:
    one, two = hosts
    backend = make_pool(one, two)
    one.script(reply=["a ", "b ", "c "], failure="drop", after=2)
    stream = backend.stream_chat([{"role": "user", "content": "hi"}])
    assert next(stream).text == "a "
    with pytest.raises(LLMUnavailable):
        list(stream)  # not restarted on the other host: "a b" was shown already
    assert reply(backend) == "from two"


def test_when_no_host_answers_the_error_names_them_all(
    hosts: tuple[FakeOllama, FakeOllama],
) -> None:
    one, two = hosts
    backend = make_pool(one, two)
    urls = [one.url, two.url]
    one.stop()
    two.stop()
    with pytest.raises(LLMUnavailable, match="No Ollama host of the 2 answered") as caught:
        reply(backend)
    assert all(url in str(caught.value) for url in urls)
    with pytest.raises(LLMError):
        backend.list_models()


def test_a_chat_turn_through_the_pool_survives_a_dead_host(
    dbs: Session,
    r: redis.Redis,
    hosts: tuple[FakeOllama, FakeOllama],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one, two = hosts
    monkeypatch.setenv("LLM_BACKEND", "ollama")
    monkeypatch.setenv("OLLAMA_HOSTS", f"{one.url},{two.url}")
    get_settings.cache_clear()
    llm.reset()
    try:
        user = make_user(dbs, "ana", commit=True)
        one.stop()  # dies between turns
        current = chat.turn(
            database.get_sessionmaker(), r, llm.get_backend(), user_id=user.id, prompt="Hello"
        )
        assert "".join(str(t) for t in current) == "from two"
        saved = history.read_all(r, session_id=current.session_id)
        assert saved[-1]["content"] == "from two" and "status" not in saved[-1]
        assert isinstance(uuid.UUID(str(current.session_id)), uuid.UUID)
    finally:
        get_settings.cache_clear()
        llm.reset()
