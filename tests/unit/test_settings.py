"""Invalid settings stop the start with one line naming the variable, never showing secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import load_settings
from core.errors import ConfigError
from tests.support.deploy import ROOT, interpolations, setting_names


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("LLM_BACKEND", "foo", "'auto', 'ollama' or 'llamacpp'"),
        ("AUTH_COOKIE_EXPIRY_DAYS", "-1", "greater than 0"),
        ("MAX_PROMPT_CHARS", "abc", "valid integer"),
        ("BCRYPT_ROUNDS", "99", "less than or equal to 16"),
        ("ALLOW_REGISTRATION", "perhaps", "valid boolean"),
        ("OLLAMA_HOST", "localhost:11434", "must start with http://"),
        ("REDIS_APPENDFSYNC", "sometimes", "'always', 'everysec' or 'no'"),
        ("DATABASE_URL", "sqlite:///ledger.db", "must start with postgresql://"),
        ("REDIS_URL", "redis://cache:6379/zero", "database number"),
    ],
)
def test_an_invalid_value_is_named_with_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("Invalid configuration: ")
    assert f"{name}={value!r}" in message and says in message
    assert "\n" not in message


def test_every_invalid_variable_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_BACKEND", "foo")
    monkeypatch.setenv("MAX_PROMPT_CHARS", "abc")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "LLM_BACKEND=" in message and "MAX_PROMPT_CHARS=" in message
    assert "\n" not in message


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=30)
@given(secret=st.text(alphabet="abcdefghijkmnopqrstuvwxyz0123456789", min_size=8, max_size=31))
def test_a_short_cookie_key_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("AUTH_COOKIE_KEY", "K3y" + secret[:28])
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "AUTH_COOKIE_KEY (value hidden): must be at least 32 characters" in message
    assert "K3y" + secret[:28] not in message


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("DATABASE_URL", "postgresql://ledger:Hunter2-s3cret@db:54x2/ledger"),
        ("DATABASE_URL", "mysql://ledger:Hunter2-s3cret@db/ledger"),
        ("REDIS_URL", "redis://:Hunter2-s3cret@cache:6379/zero"),
        ("OLLAMA_HOST", "ftp://user:Hunter2-s3cret@ollama:11434"),
    ],
)
def test_a_password_in_an_invalid_url_is_hidden(
    monkeypatch: pytest.MonkeyPatch, name: str, url: str
) -> None:
    monkeypatch.setenv(name, url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert name in message and ":***@" in message
    assert "Hunter2" not in message


def test_a_dot_env_file_in_the_working_folder_is_checked_the_same_way(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("MAX_PROMPT_CHARS=lots\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="MAX_PROMPT_CHARS='lots'"):
        load_settings()


def test_blank_urls_mean_the_embedded_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "  ")
    monkeypatch.setenv("REDIS_URL", "")
    loaded = load_settings()
    assert loaded.database_url is None and loaded.redis_url is None


# --- .env.example documents exactly what can be set ----------------------------------------

COMPOSE_SECTION = "docker compose"


def env_example() -> dict[str, tuple[str, str]]:
    """NAME -> (section, example value) for every ``NAME=value`` line of .env.example,
    commented out or not; sections are its ``# --- title ---`` lines."""
    names: dict[str, tuple[str, str]] = {}
    section = ""
    for line in (ROOT / ".env.example").read_text().splitlines():
        heading = re.match(r"#\s*---\s*(.+?)\s*-{3,}$", line)
        if heading:
            section = heading.group(1)
            continue
        entry = re.match(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if entry:
            names[entry.group(1)] = (section, entry.group(2).strip())
    return names


def test_env_example_documents_every_setting() -> None:
    assert setting_names() - set(env_example()) == set()


def test_every_name_in_env_example_is_a_setting_or_a_compose_variable() -> None:
    compose_reads = {
        name
        for path in ("docker-compose.yml", "deploy/compose.gpu.yml")
        for name, _, _ in interpolations((ROOT / path).read_text())
    }
    strays = {
        name: section
        for name, (section, _) in env_example().items()
        if name not in setting_names()
        and not (section.startswith(COMPOSE_SECTION) and name in compose_reads)
    }
    assert strays == {}


def test_every_example_value_in_env_example_is_accepted() -> None:
    for name, (_, value) in env_example().items():
        if name in setting_names() and value:
            load_settings(**{name.lower(): value})
