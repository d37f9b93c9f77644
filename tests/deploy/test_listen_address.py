"""Where the app listens: this machine only under `make run`, every interface in the image."""

from __future__ import annotations

import subprocess
import tomllib

from tests.support.deploy import ROOT


def streamlit_command(*make_args: str) -> str:
    printed = subprocess.run(
        ["make", "-n", "run", *make_args], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    (line,) = [ln for ln in printed.splitlines() if "streamlit run" in ln]
    return line


def test_make_run_listens_on_this_machine_only_unless_told() -> None:
    assert "--server.address 127.0.0.1" in streamlit_command()
    assert "--server.address 0.0.0.0" in streamlit_command("HOST=0.0.0.0")


def test_streamlit_alone_also_listens_on_this_machine_only() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"


def test_the_image_listens_on_every_interface() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "STREAMLIT_SERVER_ADDRESS=0.0.0.0" in dockerfile  # the environment beats config.toml


def test_make_run_with_workers_starts_processes_behind_haproxy_on_the_same_address() -> None:
    printed = subprocess.run(
        ["make", "-n", "run", "WORKERS=3", "HOST=0.0.0.0"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    ).stdout  # fmt: skip
    assert "-m core serve --workers 3 --port 8501 --host 0.0.0.0" in printed
    assert "apt-get install haproxy" in printed  # said when it is missing and cannot be installed
