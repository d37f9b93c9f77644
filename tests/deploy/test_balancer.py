"""The HAProxy configuration every multi-process setup runs (core/balancer.py): what it must
say for Streamlit to work behind it, and HAProxy's own check of it where HAProxy is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from core import balancer


@pytest.fixture(params=["local", "compose"])
def config(request: pytest.FixtureRequest) -> str:
    if request.param == "local":
        return balancer.local_config("127.0.0.1:8501", [("127.0.0.1", 9001), ("127.0.0.1", 9002)])
    return balancer.compose_config()


def test_browsers_stay_with_one_process_and_websockets_stay_open(config: str) -> None:
    assert f"cookie {balancer.COOKIE} insert indirect nocache" in config
    assert "option redispatch" in config  # a dead process's browsers go elsewhere
    assert "timeout tunnel 1h" in config  # a websocket carries a reply for minutes
    assert f"option httpchk GET {balancer.HEALTH_PATH}" in config
    assert "http-check expect status 200" in config
    assert "balance leastconn" in config
    assert "option forwardfor" in config  # the client's address, for the login limits


def test_workers_believe_the_balancers_forwarded_address_and_the_configured_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.cli import serve
    from core.config import Settings

    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8")
    env = serve.worker_env(2)
    assert env["LEDGER_WORKER"] == "2" and env["TRUSTED_PROXIES"] == "10.0.0.0/8,127.0.0.1/32"
    monkeypatch.delenv("TRUSTED_PROXIES")
    assert serve.worker_env(1)["TRUSTED_PROXIES"] == "127.0.0.1/32"
    Settings(trusted_proxies=serve.worker_env(1)["TRUSTED_PROXIES"])  # a valid setting


def test_local_servers_are_named_by_their_cookie() -> None:
    config = balancer.local_config("127.0.0.1:8501", [("127.0.0.1", 9001), ("127.0.0.1", 9002)])
    assert "server app1 127.0.0.1:9001 cookie app1" in config
    assert "server app2 127.0.0.1:9002 cookie app2" in config


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed")
def test_haproxy_accepts_the_configuration(config: str, tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    checked = subprocess.run(
        ["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
