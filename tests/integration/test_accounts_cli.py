"""`python -m core create-admin / reset-password`, and the generated cookie key."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import accounts, cookies, database, login, services
from core.cli import main
from core.config import get_settings
from core.errors import ConfigError
from core.models import User

PASSWORD = "correct horse battery"


def users(dbs: Session) -> int:
    dbs.expire_all()
    return int(dbs.scalar(select(func.count()).select_from(User)) or 0)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- create-admin ----------------------------------------------------------------------------


def test_create_admin_reads_the_password_from_the_environment(
    dbs: Session, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_ADMIN_PASSWORD", PASSWORD)
    code, out, _ = run(
        capsys, "create-admin", "--username", "Root", "--email", "root@example.com",
        "--display-name", "Zoë Root",
    )  # fmt: skip
    assert code == 0 and "created administrator Root" in out
    result = login.attempt(dbs, services.redis_client(), username="root", password=PASSWORD)
    assert result.ok and result.identity is not None and result.identity.is_admin
    assert result.identity.display_name == "Zoë Root"


def test_create_admin_prompts_twice_on_a_terminal(
    dbs: Session, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    typed = iter(["too short", "too short", PASSWORD, PASSWORD])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))
    code, _, err = run(capsys, "create-admin")
    assert code == 0 and "at least 12" in err
    assert login.attempt(dbs, services.redis_client(), username="admin", password=PASSWORD).ok


def test_create_admin_without_terminal_or_variable_says_what_to_set(
    dbs: Session, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, _, err = run(capsys, "create-admin")
    assert code == 2 and err.startswith("error: ") and "LEDGER_ADMIN_PASSWORD" in err
    assert users(dbs) == 0


@pytest.mark.parametrize(
    ("argv", "password", "message"),
    [
        (["--username", "x"], PASSWORD, "3 to 32"),
        (["--username", "admin", "--email", "not-an-email"], PASSWORD, "valid email"),
        (["--username", "admin"], "short", "at least 12"),
        (["--username", "admin"], "admin", "at least 12"),
        (["--username", "administrator"], "Administrator", "same as the username"),
        (["--username", "admin"], "p" * 100_000, "at most 1024"),
    ],
)
def test_create_admin_refuses_bad_input_with_one_line(
    dbs: Session,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    password: str,
    message: str,
) -> None:
    monkeypatch.setenv("LEDGER_ADMIN_PASSWORD", password)
    code, _, err = run(capsys, "create-admin", *argv)
    assert code == 2 and message in err and err.count("\n") == 1
    assert users(dbs) == 0


def test_create_admin_refuses_a_taken_name_in_any_case(
    dbs: Session, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_ADMIN_PASSWORD", PASSWORD)
    assert run(capsys, "create-admin", "--username", "Admin")[0] == 0
    code, _, err = run(capsys, "create-admin", "--username", "ADMIN", "--email", "b@example.com")
    assert code == 2 and "already exists" in err
    assert users(dbs) == 1


# --- reset-password --------------------------------------------------------------------------


@pytest.fixture
def alice(dbs: Session) -> User:
    user = accounts.create_user(
        dbs, username="alice", email="a@example.com", display_name="Alice", password=PASSWORD
    )
    for _ in range(5):
        login.attempt(dbs, services.redis_client(), username="alice", password="wrong wrong wrong")
    dbs.commit()
    return user


def test_reset_password_one_time_prints_it_once_and_lifts_the_lock(
    dbs: Session, alice: User, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "reset-password", "ALICE", "--one-time")
    assert code == 0
    one_time = out.strip().splitlines()[-1]
    result = login.attempt(dbs, services.redis_client(), username="alice", password=one_time)
    assert result.ok and result.identity is not None and result.identity.must_change_password


def test_reset_password_from_the_environment(
    dbs: Session,
    alice: User,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEDGER_NEW_PASSWORD", "the operator's new one")
    code, out, _ = run(capsys, "reset-password", "alice")
    assert code == 0 and "changed" in out
    result = login.attempt(
        dbs, services.redis_client(), username="alice", password="the operator's new one"
    )
    assert result.ok and result.identity is not None and not result.identity.must_change_password


def test_reset_password_of_an_unknown_user_is_one_error_line(
    dbs: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "reset-password", "nobody", "--one-time")
    assert code == 2 and err == "error: no user named 'nobody'.\n"


# --- the cookie key --------------------------------------------------------------------------


@pytest.fixture
def no_configured_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("AUTH_COOKIE_KEY")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path / "data" / cookies.KEY_FILE
    monkeypatch.undo()
    get_settings.cache_clear()


def test_a_missing_key_is_generated_private_and_reused(no_configured_key: Path) -> None:
    first = cookies.cookie_key()
    assert no_configured_key.read_text().strip() == first and len(first) >= 32
    assert stat.S_IMODE(no_configured_key.stat().st_mode) == 0o600
    cookies._file_keys.clear()  # as a new process would
    assert cookies.cookie_key() == first


def test_prepare_step_reports_generation_then_reuse(no_configured_key: Path) -> None:
    assert cookies.prepare_key().startswith("login cookie key: generated ")
    assert cookies.prepare_key().startswith("login cookie key: reused ")


def test_a_readable_key_file_is_made_private(no_configured_key: Path) -> None:
    cookies.cookie_key()
    no_configured_key.chmod(0o644)
    cookies._file_keys.clear()
    cookies.cookie_key()
    assert stat.S_IMODE(no_configured_key.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", ["short", "some_signature_key_but_now_long_enough_xx"])
def test_an_unusable_key_file_is_refused_naming_it(no_configured_key: Path, content: str) -> None:
    no_configured_key.parent.mkdir(parents=True)
    (no_configured_key.parent / ".ledger-data").write_text("x")
    no_configured_key.write_text(content)
    with pytest.raises(ConfigError) as err:
        cookies.cookie_key()
    assert str(no_configured_key) in str(err.value) and content not in str(err.value)


def test_a_configured_key_wins_and_no_file_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        assert cookies.prepare_key() == "login cookie key: AUTH_COOKIE_KEY"
        assert not (tmp_path / "data").exists()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_make_run_prepare_includes_the_key_step(
    clean_state: None,
    no_configured_key: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database.reset()
    code, out, _ = run(capsys, "prepare")
    assert code == 0 and f"login cookie key: generated {no_configured_key}" in out
    assert "administrators: none yet; create one with" in out
