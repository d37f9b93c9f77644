"""The scripted Ollama server answers the real `ollama` client the way Ollama does."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import pytest

from tests.support.fake_ollama import FakeOllama


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
