"""Service URLs are checked before use and printed without their secrets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.urls import check_database_url, check_redis_url, redact_url, sqlalchemy_url

# Passwords as people paste them into URLs: anything but the characters that end the part.
passwords = st.text(
    alphabet=st.characters(
        codec="ascii", categories=["L", "N", "P", "S"], exclude_characters="@/?#:%[]"
    ),
    min_size=4,
    max_size=40,
)


@given(password=passwords)
def test_a_user_info_password_is_never_shown(password: str) -> None:
    for url, user_info in (
        (f"postgresql://ledger:{password}@db.example.com:5432/ledger", "ledger:***"),
        (f"redis://:{password}@cache:6379/0", ":***"),
        (f"rediss://default:{password}@cache:6380/1", "default:***"),
    ):
        shown = redact_url(url)
        # Compare the whole user info: a password such as "redi" or "ledger" also occurs
        # in the scheme or the user name, which are shown on purpose.
        assert shown.split("://", 1)[1].split("@", 1)[0] == user_info


@given(password=passwords)
def test_a_password_query_parameter_is_never_shown(password: str) -> None:
    shown = redact_url(f"postgresql://db/ledger?sslmode=require&password={password}")
    assert "password=***" in shown and "sslmode=require" in shown
    assert f"password={password}" not in shown


@pytest.mark.parametrize(
    "url",
    ["postgresql://db:5432/ledger", "redis://127.0.0.1:6379/0", "unix:///run/redis.sock?db=2"],
)
def test_a_url_without_secrets_is_shown_as_is(url: str) -> None:
    assert redact_url(url) == url


def test_an_unparseable_url_is_not_echoed() -> None:
    assert redact_url("postgresql://u:s3cret@[::1/db") == "<unparseable URL>"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ledger:pw@db.example.com:5432/ledger",
        "postgres://ledger@db/ledger",
        "postgresql+psycopg://postgres@/postgres?host=/tmp/pg",
        "postgresql+psycopg2://u:p@[::1]:5432/db",
        "postgresql://db/ledger?sslmode=require",
    ],
)
def test_postgres_urls_that_work_are_accepted(url: str) -> None:
    assert check_database_url(url) == url
    assert sqlalchemy_url(url).startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://u:s3cret@db/ledger", "must start with postgresql://"),
        ("postgresql://u:s3cret@db:54x2/ledger", "the port must be a number"),
        ("postgresql://u:s3cret@db:99999/ledger", "the port must be a number"),
        ("postgresql://u:s3cret@[::1/ledger", "malformed IPv6"),
        ("postgresql+asyncpg://u:s3cret@db/ledger", "driver 'asyncpg' is not supported"),
    ],
)
def test_postgres_urls_that_cannot_work_are_refused_without_echoing_them(
    url: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        check_database_url(url)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.1:6379",
        "rediss://default:pw@cache.example.com:6380/3",
        "unix:///run/redis/redis.sock?db=1",
    ],
)
def test_redis_urls_that_work_are_accepted(url: str) -> None:
    assert check_redis_url(url) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://:s3cret@cache:6379/0", "must start with redis://"),
        ("redis://:s3cret@cache:63x9/0", "the port must be a number"),
        # redis-py would silently use database 0 for these two:
        ("redis://:s3cret@cache:6379/zero", "the path must be a database number"),
        ("redis://:s3cret@cache:6379/0/1", "the path must be a database number"),
        ("unix:///run/redis.sock?db=two", "Invalid value for 'db'"),
    ],
)
def test_redis_urls_that_cannot_work_are_refused_without_echoing_them(
    url: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        check_redis_url(url)
    assert "s3cret" not in str(caught.value)
