"""deploy/Dockerfile and .dockerignore: lint-clean, cached dependency layers, portable
llama.cpp, non-root, a /healthz HEALTHCHECK, and no secret in the image or its context."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest

from tests.support.deploy import (
    DOCKERFILE,
    ROOT,
    dockerignore_patterns,
    healthcheck_command,
    ignored,
    instructions,
    stages,
    tool,
)


def test_hadolint_finds_nothing() -> None:
    run = subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_hadolint_is_really_checking() -> None:
    bad = "FROM python:3.11-slim\nRUN apt-get install curl\nUSER root\n"
    run = subprocess.run(
        [tool("hadolint"), "--no-color", "-"], input=bad, capture_output=True, text=True
    )
    assert run.returncode != 0 and "DL3008" in run.stdout


def test_base_is_slim_python_311_for_both_stages() -> None:
    froms = [a for w, a in instructions() if w == "FROM"]
    arg = next(a for w, a in instructions() if w == "ARG" and a.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", arg)
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]


def test_dependencies_install_before_the_code_is_copied() -> None:
    builder = stages()["builder"]
    copies = [a for w, a in builder if w == "COPY"]
    assert copies == ["pyproject.toml requirements.lock ./"], "the builder sees only the pins"
    runtime = stages()["runtime"]
    first_code = next(i for i, (w, a) in enumerate(runtime) if w == "COPY" and "--from" not in a)
    venv = next(i for i, (w, a) in enumerate(runtime) if w == "COPY" and "--from=builder" in a)
    assert venv < first_code


def test_llama_cpp_is_built_portable_with_the_makefile_flags() -> None:
    makefile = (ROOT / "Makefile").read_text()
    flags = re.search(r"^LLAMA_CMAKE_ARGS := (.+)$", makefile, re.M).group(1).strip()
    assert f'ARG LLAMA_CMAKE_ARGS="{flags}"' in DOCKERFILE.read_text()
    assert "-DGGML_NATIVE=OFF" in flags
    builder = " ".join(a for w, a in stages()["builder"] if w == "RUN")
    assert (
        'CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" pip wheel --no-deps --no-binary llama-cpp-python'
        in builder
    )


def test_the_lock_pins_llama_cpp_and_every_runtime_dependency() -> None:
    import tomllib

    lock = (ROOT / "requirements.lock").read_text().lower().replace("_", "-")
    assert re.search(r"^llama-cpp-python==\S+$", lock, re.M)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.split(r"[\[<>=!~; ]", dep, maxsplit=1)[0].lower().replace("_", "-")
        assert re.search(rf"^{re.escape(name)}==", lock, re.M), (
            f"{name} is not in requirements.lock"
        )


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    users = [a for w, a in stages()["runtime"] if w == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"


def test_the_healthcheck_asks_healthz_with_a_timeout() -> None:
    args = next(a for w, a in instructions() if w == "HEALTHCHECK")
    assert "--timeout=" in args
    command = healthcheck_command()
    assert command[0] == "python" and "/healthz" in command[-1] and "timeout=" in command[-1]


def test_no_secret_is_baked_into_the_image() -> None:
    for word, args in instructions():
        if word in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"(\w+)=", args)
            assert not [
                n
                for n in names
                if re.search(r"PASSWORD|SECRET|TOKEN|_KEY$|DATABASE_URL|REDIS_URL", n)
            ]
    assert "secrets.toml" not in DOCKERFILE.read_text()


def test_the_image_starts_the_app_entry_point() -> None:
    cmd = next(a for w, a in reversed(instructions()) if w == "CMD")
    assert json.loads(cmd) == ["streamlit", "run", "app/main.py"]


@pytest.mark.parametrize(
    "path", [".env", ".data/postgres/PG_VERSION", ".venv/bin/python", ".git/config",
             "core/__pycache__/db.cpython-311.pyc", ".streamlit/secrets.toml", "tests/conftest.py"]
)  # fmt: skip
def test_secrets_data_and_tooling_stay_out_of_the_build_context(path: str) -> None:
    assert ignored(path, dockerignore_patterns())


def test_everything_the_dockerfile_copies_is_in_the_build_context() -> None:
    ignore_patterns = dockerignore_patterns()
    sources = []
    for word, args in instructions():
        if word == "COPY" and "--from" not in args:
            sources += shlex.split(args)[:-1]
    assert "core" in sources and "migrations" in sources
    for source in sources:
        for path in [ROOT / source, *(ROOT / source).rglob("*.py")]:
            rel = path.relative_to(ROOT).as_posix()
            assert path.exists(), f"COPY {rel}: no such file"
            if "__pycache__" not in rel:
                assert not ignored(rel, ignore_patterns), f"{rel} is excluded by .dockerignore"
