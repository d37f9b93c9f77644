"""Validation rules for accounts, cookie keys and cookie tokens (pure: no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from core import accounts, admin, cookies, passwords
from core.config import load_settings
from core.errors import ConfigError, InvalidInput

GOOD = {
    "username": "alice.b-c_d",
    "email": "alice@example.com",
    "display_name": "Alice",
    "password": "correct horse battery",
    "password_confirm": "correct horse battery",
}


# --- usernames -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["abc", "a" * 32, "Alice", "a.b", "a_b", "a-b", "007"])
def test_usernames_of_3_to_32_letters_digits_dot_underscore_hyphen_are_accepted(
    name: str,
) -> None:
    assert accounts.validate_username(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "a" * 33,
        "",
        "al ice",
        "alice@home",
        "zoë",
        "李雷",
        "robert'); DROP TABLE users;--",
        "<script>",
        "ali\nce",
        "ali\x00ce",
        "a" * 100_000,
    ],
)
def test_other_usernames_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidInput, match="3 to 32 characters") as err:
        accounts.validate_username(name)
    assert err.value.field == "username"


def test_username_is_trimmed_of_surrounding_spaces() -> None:
    assert accounts.validate_username("  alice  ") == "alice"


# --- email -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    ["a@example.com", "first.last+tag@sub.example.co.uk", "o'brien@example.ie", "zoë@exämple.de"],
)
def test_valid_emails_are_accepted(email: str) -> None:
    assert accounts.validate_email(email) == email


@pytest.mark.parametrize(
    "email",
    [
        "",
        "plain",
        "@example.com",
        "a@",
        "a@b",
        "a@@example.com",
        "a b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a..b@example.com",
        "<script>alert(1)</script>@example.com",
        "x';DROP TABLE users;--@example.com",
        "a@exam\nple.com",
        "a\u202e@example.com",
        "a" * 250 + "@example.com",
    ],
)
def test_invalid_emails_are_refused(email: str) -> None:
    with pytest.raises(InvalidInput, match="valid email") as err:
        accounts.validate_email(email)
    assert err.value.field == "email"


# --- display name ----------------------------------------------------------------------------


def test_display_name_keeps_unicode_and_markup_as_text() -> None:
    for name in ["Zoë «Ω» 李", "<b>bold</b>", "Robert'); DROP TABLE users;--"]:
        assert accounts.validate_display_name(name) == name


def test_display_name_collapses_whitespace() -> None:
    assert accounts.validate_display_name("  Alice \t  B  ") == "Alice B"


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "must not be empty"), ("   ", "must not be empty"), ("x" * 101, "at most 100")],
)
def test_bad_display_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        accounts.validate_display_name(name)


def test_display_name_with_control_characters_is_refused() -> None:
    with pytest.raises(InvalidInput, match="control characters"):
        accounts.validate_display_name("Alice\u200b")


# --- passwords -------------------------------------------------------------------------------


def test_password_of_twelve_characters_is_accepted() -> None:
    assert accounts.validate_password("x" * 11 + "y") == "x" * 11 + "y"


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "at least 12"),
        ("x" * 11, "at least 12"),
        ("x" * 1025, "at most 1024"),
        ("x" * 100_000, "at most 1024"),
        (" leading space pw", "begin or end with a space"),
        ("trailing space pw ", "begin or end with a space"),
    ],
)
def test_password_rules(password: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        accounts.validate_password(password)


def test_password_equal_to_username_ignoring_case_is_refused() -> None:
    with pytest.raises(InvalidInput, match="same as the username"):
        accounts.validate_password("Alice.Analyst", username="alice.analyst")


def test_password_confirmation_must_match() -> None:
    with pytest.raises(InvalidInput, match="do not match") as err:
        accounts.validate_password("correct horse battery", confirm="correct horse batterY")
    assert err.value.field == "password_confirm"


def test_registration_reports_every_broken_rule_by_field() -> None:
    problems = accounts.registration_problems(
        username="x", email="nope", display_name=" ", password="short", password_confirm=""
    )
    assert set(problems) == {"username", "email", "display_name", "password"}
    assert "3 to 32" in problems["username"]
    assert "at least 12" in problems["password"]


def test_a_valid_registration_has_no_problems() -> None:
    assert accounts.registration_problems(**GOOD) == {}


def test_unicode_password_hashes_the_same_in_either_normal_form() -> None:
    composed, decomposed = "café crème brûlée", "cafe\u0301 cre\u0300me bru\u0302le\u0301e"
    stored = passwords.hash_password(composed, rounds=4)
    assert passwords.verify_password(decomposed, stored)


def test_a_hundred_kilobyte_password_verifies_without_error() -> None:
    stored = passwords.hash_password("p" * 100_000, rounds=4)
    assert passwords.verify_password("p" * 100_000, stored)
    assert not passwords.verify_password("p" * 99_999, stored)


def test_hash_cost_is_read_from_the_hash() -> None:
    assert passwords.hash_cost(passwords.hash_password("correct horse battery", rounds=5)) == 5
    assert passwords.hash_cost("garbage") is None


def test_one_time_passwords_are_long_random_and_readable() -> None:
    first, second = admin.generate_one_time_password(), admin.generate_one_time_password()
    assert first != second
    assert len(first) == 19 and first.count("-") == 3
    assert not set(first) & set("0O1lI")
    accounts.validate_password(first)


# --- cookie key ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "some_key",
        "some_signature_key",
        "some_signature_key_padded_out_to_more_than_32_chars",
        "RANDOM_SIGNATURE_KEY" * 2,
    ],
)
def test_example_cookie_keys_are_refused(key: str) -> None:
    assert "example key" in (cookies.cookie_key_problem(key) or "")


@pytest.mark.parametrize("key", ["x" * 31, "a1" * 10, "ab" * 40])
def test_short_or_repetitive_cookie_keys_are_refused(key: str) -> None:
    assert cookies.cookie_key_problem(key)


def test_a_random_cookie_key_is_accepted() -> None:
    assert cookies.cookie_key_problem("Zq3v8LmN0pRsT5uWxY1aBcD2eFgH4iJk") is None


def test_settings_refuse_a_weak_cookie_key_naming_the_variable_not_the_value() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(auth_cookie_key="some_signature_key")
    assert "AUTH_COOKIE_KEY" in str(err.value)
    assert "some_signature_key" not in str(err.value)


def test_settings_treat_a_blank_cookie_key_as_unset() -> None:
    assert load_settings(auth_cookie_key="  ").auth_cookie_key is None


# --- cookie tokens ---------------------------------------------------------------------------

KEY = "k" * 16 + "Zq3v8LmN0pRsT5uWxY1aBcD2eFgH4iJk"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
UID = uuid.UUID("12345678-1234-5678-1234-567812345678")
TID = uuid.UUID("87654321-4321-8765-4321-876543218765")


def token(**overrides: object) -> str:
    payload = {
        "username": "alice",
        "exp_date": (NOW + timedelta(days=7)).timestamp(),
        "uid": str(UID),
        "tid": str(TID),
        "iat_us": cookies.to_micros(NOW - timedelta(hours=1)),
    }
    payload.update(overrides)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, KEY, algorithm="HS256")


def test_issued_token_reads_back_exactly() -> None:
    issued = datetime(2026, 11, 26, 11, 59, 59, 123456, tzinfo=UTC)
    raw = cookies.issue_token(
        username="Alice",
        user_id=UID,
        token_id=TID,
        issued_at=issued,
        expires_at=issued + timedelta(days=7),
        key=KEY,
    )
    claims = cookies.read_token(raw, key=KEY, now=NOW)
    assert claims is not None
    assert (claims.username, claims.user_id, claims.issued_at) == ("alice", UID, issued)
    assert claims.token_id == TID


def test_token_signed_with_another_key_is_refused() -> None:
    forged = jwt.encode(
        {"username": "alice", "exp_date": NOW.timestamp() + 99, "uid": str(UID), "iat_us": 1},
        "another key that is long enough to be used",
        algorithm="HS256",
    )
    assert cookies.read_token(forged, key=KEY, now=NOW) is None


def test_expired_token_is_refused() -> None:
    assert (
        cookies.read_token(
            token(exp_date=(NOW - timedelta(seconds=1)).timestamp()), key=KEY, now=NOW
        )
        is None
    )


def test_unsigned_token_is_refused() -> None:
    unsigned = jwt.encode({"username": "alice", "uid": str(UID)}, None, algorithm="none")
    assert cookies.read_token(unsigned, key=KEY, now=NOW) is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"uid": None},
        {"iat_us": None},
        {"uid": "not-a-uuid"},
        {"iat_us": "1"},
        {"exp_date": "x"},
        {"tid": None},  # a cookie from before login tokens: Logout could not end it
        {"tid": "not-a-uuid"},
    ],
)
def test_token_without_ledgers_claims_is_refused(overrides: dict[str, object]) -> None:
    assert cookies.read_token(token(**overrides), key=KEY, now=NOW) is None


def test_tampered_token_is_refused() -> None:
    header, payload, signature = token().split(".")
    assert cookies.read_token(f"{header}.{payload}x.{signature}", key=KEY, now=NOW) is None


@pytest.mark.parametrize("raw", ["", "garbage", "a.b.c", "x" * 10_000])
def test_garbage_cookies_are_refused(raw: str) -> None:
    assert cookies.read_token(raw, key=KEY, now=NOW) is None


def test_microsecond_conversion_is_exact() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert cookies.from_micros(cookies.to_micros(moment)) == moment


# --- the device part ----------------------------------------------------------------------------

DEV = uuid.UUID("11111111-2222-3333-4444-555555555555")


def test_a_login_cookie_carries_the_device_id_for_its_name_only() -> None:
    raw = cookies.issue_token(
        username="Alice",
        user_id=UID,
        token_id=TID,
        issued_at=NOW,
        expires_at=NOW + timedelta(days=7),
        key=KEY,
        device_id=DEV,
    )
    claims = cookies.read_token(raw, key=KEY, now=NOW)
    assert claims is not None and claims.device_id == DEV
    assert cookies.read_device_token(raw, name=" ALICE ", key=KEY, now=NOW) == DEV
    assert cookies.read_device_token(raw, name="bob", key=KEY, now=NOW) is None
    # The login ends after a week; the device part outlives it (a year).
    later = NOW + timedelta(days=30)
    assert cookies.read_token(raw, key=KEY, now=later) is None
    assert cookies.read_device_token(raw, name="alice", key=KEY, now=later) == DEV


def test_the_device_part_left_by_logout_is_no_login() -> None:
    raw = cookies.issue_device_token(name="Alice", device_id=DEV, now=NOW, key=KEY)
    assert cookies.read_token(raw, key=KEY, now=NOW) is None
    assert cookies.read_device_token(raw, name="alice", key=KEY, now=NOW) == DEV


def test_the_device_part_expires_after_a_year_and_needs_the_key() -> None:
    raw = cookies.issue_device_token(name="alice", device_id=DEV, now=NOW, key=KEY)
    later = NOW + timedelta(days=cookies.DEVICE_DAYS, seconds=1)
    assert cookies.read_device_token(raw, name="alice", key=KEY, now=later) is None
    other = "another key that is long enough to be used"
    assert cookies.read_device_token(raw, name="alice", key=other, now=NOW) is None


@pytest.mark.parametrize("raw", [None, "", "garbage", "x" * 10_000])
def test_garbage_device_cookies_are_refused(raw: str | None) -> None:
    assert cookies.read_device_token(raw, name="alice", key=KEY, now=NOW) is None


def test_a_login_cookie_without_a_device_part_gives_no_device() -> None:
    assert cookies.read_device_token(token(), name="alice", key=KEY, now=NOW) is None
