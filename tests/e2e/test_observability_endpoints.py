"""/metrics and /healthz of the running app (`streamlit run app/main.py`), as Prometheus,
Docker and Kubernetes see them.

The app runs in its own process against the suite's PostgreSQL, a Redis server this module
owns (so it can stop and restart it), and a scripted Ollama server. Without `st.App`,
Streamlit answers both paths with its HTML page and status 200, so every check here looks at
the content type and the body, not only the status.

The values after one scripted chat turn (exact counts, labels, token totals equal to what the
Ollama server reported) are checked in test_journey.py, on the app a browser has just used.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.app_server import AppServer, get
from tests.support.deploy import healthcheck_command
from tests.support.fake_ollama import FakeOllama
from tests.support.redis_server import RedisServer

# The metric families core.metrics promises (the contract in the shared brief), with types.
EXPECTED_FAMILIES = {
    "ledger_llm_requests": "counter",
    "ledger_llm_time_to_first_token_seconds": "histogram",
    "ledger_llm_request_duration_seconds": "histogram",
    "ledger_llm_prompt_tokens": "counter",
    "ledger_llm_completion_tokens": "counter",
    "ledger_llm_tokens_per_second": "histogram",
    "ledger_llm_active_streams": "gauge",
    "ledger_logins": "counter",
    "ledger_lockouts": "counter",
    "ledger_quota_refusals": "counter",
    "ledger_storage_errors": "counter",
}


def scrape(app: AppServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics as {(name, labels): value}."""
    reply = get(f"{app.url}/metrics")
    assert reply.status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(reply.text)
        for s in family.samples
    }


def image_healthcheck(app: AppServer) -> int:
    """Exit status of deploy/Dockerfile's HEALTHCHECK command run against this app."""
    command = healthcheck_command()
    assert command[0] == "python"
    env = {"PATH": "/usr/bin:/bin", "STREAMLIT_SERVER_PORT": str(app.port)}
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True).returncode


def wait_for_health(app: AppServer, status: int, within: float = 15.0) -> dict:
    """Poll /healthz until it answers ``status``; return its JSON body."""
    deadline = time.monotonic() + within
    while True:
        reply = get(f"{app.url}/healthz")
        if reply.status == status:
            return json.loads(reply.body)
        if time.monotonic() > deadline:
            raise AssertionError(f"/healthz stayed {reply.status}: {reply.text}\n{app.log_tail()}")
        time.sleep(0.2)  # polling for a state change, not waiting for time to pass


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("own-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture(scope="module")
def app(
    services_env: None,
    pg_url: str,
    redis_server: RedisServer,
    fake_ollama: FakeOllama,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppServer]:
    data_dir: Path = tmp_path_factory.mktemp("app-data")
    server = AppServer(
        {
            "DATABASE_URL": pg_url,
            "REDIS_URL": redis_server.url,
            "DATA_DIR": str(data_dir),
            "LLM_BACKEND": "ollama",
            "OLLAMA_HOST": fake_ollama.url,
            "OLLAMA_MODEL": fake_ollama.model,
        },
        log_path=data_dir / "app.log",
    )
    server.start()
    yield server
    server.stop()


def test_metrics_answers_in_prometheus_text_format(app: AppServer) -> None:
    reply = get(f"{app.url}/metrics")
    assert reply.status == 200
    media_type, *params = (p.strip() for p in reply.content_type.split(";"))
    assert media_type == "text/plain"
    assert any(p in ("version=0.0.4", "version=1.0.0") for p in params), reply.content_type
    assert "<html" not in reply.text.lower()
    assert "# TYPE ledger_llm_requests_total counter" in reply.text


def test_metrics_lists_every_ledger_family_with_its_type(app: AppServer) -> None:
    families = {
        f.name: f.type
        for f in text_string_to_metric_families(get(f"{app.url}/metrics").text)
        if f.name.startswith("ledger_")
    }
    assert {name: families.get(name) for name in EXPECTED_FAMILIES} == EXPECTED_FAMILIES


def test_metrics_speaks_openmetrics_to_a_scraper_that_asks(app: AppServer) -> None:
    reply = get(f"{app.url}/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert reply.content_type.startswith("application/openmetrics-text")
    assert reply.text.rstrip().endswith("# EOF")


def test_storage_error_series_start_at_zero_for_both_stores(app: AppServer) -> None:
    samples = scrape(app)
    for service in ("postgres", "redis"):
        assert (
            "ledger_storage_errors_total",
            frozenset({("service", service)}),
        ) in samples


def test_healthz_is_json_200_when_every_service_answers(app: AppServer) -> None:
    reply = get(f"{app.url}/healthz")
    assert (reply.status, reply.content_type) == (200, "application/json")
    body = json.loads(reply.body)
    assert body["status"] == "ok"
    assert body["checks"]["postgres"]["state"] == "ok"
    assert body["checks"]["redis"]["state"] == "ok"
    assert all(check["state"] == "ok" for check in body["checks"].values())


def test_healthz_turns_503_while_redis_is_down_and_200_once_it_is_back(
    app: AppServer, redis_server: RedisServer
) -> None:
    redis_errors = ("ledger_storage_errors_total", frozenset({("service", "redis")}))
    before = scrape(app)[redis_errors]

    redis_server.stop()
    try:
        reply = get(f"{app.url}/healthz")
        assert (reply.status, reply.content_type) == (503, "application/json")
        assert reply.seconds < 5, "a dead Redis must not hold /healthz"
        body = json.loads(reply.body)
        assert body["status"] == "unavailable"
        assert body["checks"]["redis"]["state"] == "unavailable"
        assert "redis://" not in reply.body.decode()  # the URL is for the Status page only
        assert body["checks"]["postgres"]["state"] == "ok"
        assert scrape(app)[redis_errors] >= before + 1
        assert image_healthcheck(app) != 0
    finally:
        redis_server.start()

    body = wait_for_health(app, 200)  # same app process: it reconnects by itself
    assert body["checks"]["redis"]["state"] == "ok"
    assert image_healthcheck(app) == 0


def test_the_image_healthcheck_passes_against_a_healthy_app(app: AppServer) -> None:
    assert image_healthcheck(app) == 0
