"""The files deploy/Dockerfile copies into the image are enough to migrate and to serve.

No container engine here, so the test rebuilds the image's /app the way the Dockerfile does
(its runtime-stage COPY lines, filtered by .dockerignore) in a temporary folder and runs the
image's two commands from it: `python -m core migrate` and `streamlit run app/main.py`.
A file the app needs at run time but the Dockerfile forgets to copy fails here.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core import migrate, services
from tests.support.app_server import AppServer, get
from tests.support.deploy import ROOT, dockerignore_patterns, ignored, stages
from tests.support.fake_ollama import FakeOllama


def build_layout(target: Path) -> Path:
    patterns = dockerignore_patterns()
    for word, args in stages()["runtime"]:
        if word != "COPY" or "--from" in args:
            continue
        *sources, dest = shlex.split(args)
        for source in sources:
            src = ROOT / source
            out = target / dest / src.name if dest.endswith("/") else target / dest
            files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
            for file in files:
                rel = file.relative_to(ROOT).as_posix()
                if ignored(rel, patterns):
                    continue
                to = out if src.is_file() else out / file.relative_to(src)
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, to)
    return target


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_layout(tmp_path_factory.mktemp("image") / "app")


@pytest.fixture(scope="module")
def fresh_database(pg_admin_url: str) -> Iterator[str]:
    name = f"ledger_image_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    from urllib.parse import urlsplit, urlunsplit

    yield services.sqlalchemy_url(urlunsplit(urlsplit(pg_admin_url)._replace(path=f"/{name}")))
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def image_env(image_root: Path, **settings: str) -> dict[str, str]:
    """The Dockerfile's ENV (PYTHONPATH=/app...), pointed at the rebuilt folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    return {**env, "PYTHONPATH": str(image_root), "PYTHONDONTWRITEBYTECODE": "1", **settings}


def run_in_image(
    image_root: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=image_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_image_imports_core_from_its_own_copy(image_root: Path, tmp_path: Path) -> None:
    env = image_env(image_root, DATA_DIR=str(tmp_path))
    run = run_in_image(
        image_root, env, "-c", "import core, core.config as c; print(core.__file__, c.SOURCE_ROOT)"
    )
    assert run.returncode == 0, run.stderr
    module, source_root = run.stdout.split()
    assert Path(module).is_relative_to(image_root) and Path(source_root) == image_root


def test_the_migrate_command_brings_an_empty_database_to_head(
    image_root: Path, fresh_database: str, tmp_path: Path
) -> None:
    env = image_env(image_root, DATABASE_URL=fresh_database, DATA_DIR=str(tmp_path))
    run = run_in_image(image_root, env, "-m", "core", "migrate")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"database schema: empty -> {migrate.head()}"


def test_the_app_serves_from_the_image_files(
    image_root: Path, fresh_database: str, redis_url: str, tmp_path: Path
) -> None:
    env = image_env(image_root, DATABASE_URL=fresh_database, DATA_DIR=str(tmp_path))
    assert run_in_image(image_root, env, "-m", "core", "migrate").returncode == 0
    with FakeOllama() as ollama:
        env |= {"REDIS_URL": redis_url, "LLM_BACKEND": "ollama", "OLLAMA_HOST": ollama.url,
                "OLLAMA_MODEL": ollama.model}  # fmt: skip
        app = AppServer(env, log_path=tmp_path / "app.log", root=image_root)
        app.start()
        try:
            health = get(f"{app.url}/healthz")
            assert (health.status, health.content_type) == (200, "application/json"), health.text
            assert json.loads(health.body)["status"] == "ok"
            page = get(f"{app.url}/")
            assert page.status == 200 and "<html" in page.text.lower()
        finally:
            app.stop()
