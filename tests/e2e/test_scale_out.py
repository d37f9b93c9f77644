"""Several app processes behind a real HAProxy (``python -m core serve``, what `make run
WORKERS=2` runs), in a real browser: a process killed mid-reply loses nothing and its browser
goes on in another one, signed in; a process stopped gracefully finishes its reply while new
browsers go elsewhere; each process counts its own metrics (Prometheus sums them)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import accounts, database, history, services
from core.models import ConversationSession
from tests.support import browser as b
from tests.support import cluster as clusters
from tests.support.app_server import get
from tests.support.fake_ollama import FakeOllama
from tests.support.state import empty_tables

USER, PASSWORD = "sam", "a passphrase for sam"
WORDS = [f"w{i} " for i in range(60)]
REASON = clusters.unavailable_reason()
pytestmark = pytest.mark.skipif(
    REASON is not None and os.environ.get("LEDGER_REQUIRE_BROWSER") != "1",
    reason=f"MULTI-PROCESS TESTS NOT RUN: {REASON}",
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(
    services_env: None, fake: FakeOllama, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[clusters.Cluster]:
    if REASON is not None:
        pytest.fail(f"LEDGER_REQUIRE_BROWSER=1 but {REASON}")
    work = tmp_path_factory.mktemp("cluster")
    with clusters.cluster_for(fake, work, workers=2, DRAIN_SECONDS="30") as running:
        yield running


@pytest.fixture
def page(cluster: clusters.Cluster, chromium: Any, fake: FakeOllama) -> Iterator[Any]:
    empty_tables()
    services.redis_client().flushdb()
    fake.script()
    with database.session_scope() as session:
        accounts.create_user(
            session, username=USER, email="s@example.com", display_name="Sam", password=PASSWORD
        )
    context = b.new_context(chromium)
    tab = b.open_page(context, cluster.url)
    b.log_in(tab, USER, PASSWORD)
    yield tab
    context.close()


def node(page: Any) -> str:
    """The app process this browser is pinned to (HAProxy's affinity cookie)."""
    (value,) = [c["value"] for c in page.context.cookies() if c["name"] == "ledger_node"]
    return str(value)


def wait_text(page: Any, at_least: int, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = b.last_reply_text(page)
        if len(text.split()) >= at_least:
            return text
        time.sleep(0.05)  # sampling the page
    raise TimeoutError(f"the reply did not reach {at_least} words: {b.main_text(page)[-600:]!r}")


def stored() -> list[history.Message]:
    with database.session_scope() as db:
        sid = db.query(ConversationSession.id).one()[0]
    return history.read_all(services.redis_client(), session_id=sid)


def test_a_process_killed_mid_reply_loses_nothing_and_the_browser_goes_on_elsewhere(
    page: Any, cluster: clusters.Cluster, fake: FakeOllama
) -> None:
    first = node(page)
    fake.script(reply=WORDS, delay=0.02, hold=15)
    b.ask(page, "Explain operating leverage")
    fake.wait_held()
    wait_text(page, 12)
    time.sleep(1.2)  # the draft is rewritten once a second
    cluster.signal_worker(first, signal.SIGKILL)
    fake.release()
    time.sleep(6)  # the draft's lease (5 s) runs out; HAProxy has marked the process down
    fake.script(reply="Fine, go on.")
    page.reload()
    b.idle(page)
    assert not b.login_form_shown(page)  # the login cookie works on any process
    messages = b.page_messages(page)
    assert messages[0] == "Explain operating leverage"
    assert messages[1].startswith("w0 w1 w2") and "w12" in messages[1]
    assert "stopped before it ended" in b.main_text(page)
    saved = stored()
    assert saved[1]["status"] == "interrupted" and saved[1]["content"].startswith("w0 w1")
    b.ask(page, "And financial leverage?")
    b.sample_reply_growth(page)
    assert b.last_reply_text(page) == "Fine, go on."
    assert [m["role"] for m in stored()] == ["user", "assistant", "user", "assistant"]
    cluster.wait_serving(first)  # the supervisor started it again


def test_a_process_stopped_gracefully_finishes_its_reply_and_takes_no_new_browsers(
    page: Any, cluster: clusters.Cluster, fake: FakeOllama
) -> None:
    mine = node(page)
    port = cluster.worker_ports()[mine]
    fake.script(reply=WORDS, delay=0.08)  # about 5 s of reply
    b.ask(page, "Summarise the cash flow")
    wait_text(page, 5)
    cluster.signal_worker(mine, signal.SIGTERM)
    time.sleep(0.3)
    draining = get(f"http://127.0.0.1:{port}/healthz/serving")
    assert draining.status == 503 and json.loads(draining.body)["status"] == "draining"
    time.sleep(2.5)  # HAProxy checks every second and needs two failures
    others = {_node_of_new_browser(cluster) for _ in range(4)}
    assert mine not in others
    b.sample_reply_growth(page, timeout=30)
    assert b.last_reply_text(page) == "".join(WORDS).strip()
    assert "status" not in stored()[-1]  # complete replies carry no status mark
    cluster.wait_serving(mine)


def _node_of_new_browser(cluster: clusters.Cluster) -> str:
    """The process HAProxy picks for a browser without its cookie."""
    import urllib.request

    with urllib.request.urlopen(f"{cluster.url}/healthz/serving", timeout=5) as resp:  # noqa: S310
        match = re.search(r"ledger_node=(app\d+)", resp.headers.get("Set-Cookie", ""))
    assert match is not None
    return match.group(1)


def _counter(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def test_each_process_counts_its_own_logins_and_prometheus_sums_them(
    cluster: clusters.Cluster, chromium: Any, tmp_path: Path
) -> None:
    empty_tables()
    with database.session_scope() as session:
        accounts.create_user(
            session, username=USER, email="s@example.com", display_name="Sam", password=PASSWORD
        )
    ports = cluster.worker_ports()
    before = {n: _counter(get(f"http://127.0.0.1:{p}/metrics").text, "ledger_logins_total{")
              for n, p in ports.items()}  # fmt: skip
    for port in ports.values():  # one login straight on each process
        context = b.new_context(chromium)
        tab = b.open_page(context, f"http://127.0.0.1:{port}")
        b.log_in(tab, USER, PASSWORD)
        context.close()
    after = {n: _counter(get(f"http://127.0.0.1:{p}/metrics").text, "ledger_logins_total{")
             for n, p in ports.items()}  # fmt: skip
    assert {n: after[n] - before[n] for n in ports} == {n: 1.0 for n in ports}
    assert sum(after.values()) - sum(before.values()) == 2.0  # what sum() in Grafana shows
