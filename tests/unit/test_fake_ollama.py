"""The scripted Ollama server answers the real `ollama` client the way Ollama does."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import ollama
import pytest

from tests.support.fake_ollama import FakeOllama, FakeOllamaProcess


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


def test_lists_and_shows_its_model(server: FakeOllama) -> None:
    client = ollama.Client(host=server.url)
    assert [m.model for m in client.list().models] == [server.model]
    assert client.show(server.model).modelinfo["llama.context_length"] == 8192


def test_streams_the_scripted_reply_with_token_counts_at_the_end(server: FakeOllama) -> None:
    server.script(reply="EBITDA adds back depreciation and amortisation.")
    client = ollama.Client(host=server.url)
    parts = list(
        client.chat(
            model=server.model, messages=[{"role": "user", "content": "EBITDA?"}], stream=True
        )
    )
    assert "".join(p.message.content or "" for p in parts) == (
        "EBITDA adds back depreciation and amortisation."
    )
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert (parts[-1].prompt_eval_count, parts[-1].eval_count) == (1, 6)
    assert parts[-1].done_reason == "stop" and parts[-1].eval_duration
    assert server.requests[-1]["messages"][-1]["content"] == "EBITDA?"


def test_answers_without_streaming_in_one_object(server: FakeOllama) -> None:
    server.script(reply="Working capital.")
    reply = ollama.Client(host=server.url).chat(
        model=server.model, messages=[{"role": "user", "content": "NWC?"}]
    )
    assert reply.message.content == "Working capital." and reply.done


def test_generate_streams_responses(server: FakeOllama) -> None:
    server.script(reply="Net income.")
    parts = list(
        ollama.Client(host=server.url).generate(model=server.model, prompt="NI?", stream=True)
    )
    assert "".join(p.response for p in parts) == "Net income." and parts[-1].done


def test_an_unknown_model_is_a_404_like_ollamas(server: FakeOllama) -> None:
    client = ollama.Client(host=server.url)
    with pytest.raises(ollama.ResponseError) as raised:
        client.chat(model="missing:7b", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 404
    assert raised.value.error == 'model "missing:7b" not found, try pulling it first'


def test_serves_one_named_model() -> None:
    with FakeOllama(model_name="ledger-scripted:latest") as fake:
        assert fake.model == "ledger-scripted:latest"
        names = [m.model for m in ollama.Client(host=fake.url).list().models]
        assert names == ["ledger-scripted:latest"]


def test_show_can_leave_the_context_length_out_and_tags_can_be_empty() -> None:
    with FakeOllama() as fake:
        client = ollama.Client(host=fake.url)
        fake.context_length = None
        info = client.show(fake.model).modelinfo or {}
        assert info["general.architecture"] == "llama" and "llama.context_length" not in info
        assert fake.shown == [fake.model]
        fake.models = ()
        assert client.list().models == []


def _stream_into(host: str, model: str, out: queue.Queue[str | None]) -> threading.Thread:
    """Stream a chat reply on a thread, putting each chunk's text in ``out`` (None at the end)."""

    def run() -> None:
        client = ollama.Client(host=host)
        for part in client.chat(
            model=model, messages=[{"role": "user", "content": "?"}], stream=True
        ):
            if part.message.content:
                out.put(part.message.content)
        out.put(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _drain(out: queue.Queue[str | None]) -> list[str | None]:
    got: list[str | None] = []
    while not out.empty():
        got.append(out.get_nowait())
    return got


@pytest.mark.parametrize("where", ["in-process", "own-process"])
def test_a_held_reply_waits_after_the_chunks_asked_for_until_released(where: str) -> None:
    fake = FakeOllama() if where == "in-process" else FakeOllamaProcess()
    fake.start()
    try:
        fake.script(reply=["One", " two", " three", " four"], hold=2)
        out: queue.Queue[str | None] = queue.Queue()
        thread = _stream_into(fake.url, fake.model, out)
        fake.wait_held()
        assert [out.get(timeout=5), out.get(timeout=5)] == ["One", " two"]
        assert out.empty() and thread.is_alive()  # held: nothing more, not finished
        fake.release()
        thread.join(5)
        assert _drain(out) == [" three", " four", None]
    finally:
        fake.stop()


def test_a_new_script_lets_a_held_reply_go_on(server: FakeOllama) -> None:
    """A test that ends while a reply is held does not leave it held for the next one."""
    server.script(reply=["One", " two"], hold=1)
    out: queue.Queue[str | None] = queue.Queue()
    thread = _stream_into(server.url, server.model, out)
    server.wait_held()
    server.script(reply="Next.")
    thread.join(5)
    assert _drain(out) == ["One", " two", None]
