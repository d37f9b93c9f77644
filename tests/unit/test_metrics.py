"""Storage-error counting: what counts as a failure of PostgreSQL or Redis, and what does not."""

from __future__ import annotations

import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import exc as sa_exc

from core import metrics
from core.errors import ServiceUnavailable


def storage_errors(service: str) -> float:
    value = REGISTRY.get_sample_value("ledger_storage_errors_total", {"service": service})
    assert value is not None, f"no ledger_storage_errors_total series for {service}"
    return value


@pytest.mark.parametrize("service", ["postgres", "redis"])
def test_storage_error_series_exist_before_any_error(service: str) -> None:
    assert storage_errors(service) >= 0


def test_a_redis_connection_failure_is_counted_and_propagates_unchanged() -> None:
    before = storage_errors("redis")
    failure = redis.ConnectionError("Connection refused")
    with pytest.raises(redis.ConnectionError) as raised, metrics.storage_errors_counted("redis"):
        raise failure
    assert raised.value is failure
    assert storage_errors("redis") == before + 1


def test_a_postgres_operational_error_is_counted_under_postgres_only() -> None:
    pg, rd = storage_errors("postgres"), storage_errors("redis")
    with pytest.raises(sa_exc.OperationalError), metrics.storage_errors_counted("postgres"):
        raise sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    assert (storage_errors("postgres"), storage_errors("redis")) == (pg + 1, rd)


def test_service_unavailable_counts_as_a_storage_failure() -> None:
    before = storage_errors("redis")
    with pytest.raises(ServiceUnavailable), metrics.storage_errors_counted("redis"):
        raise ServiceUnavailable("Redis", "redis://cache:6379/0", "Connection refused")
    assert storage_errors("redis") == before + 1


@pytest.mark.parametrize(
    ("service", "error"),
    [
        ("postgres", sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key"))),
        ("redis", redis.ResponseError("WRONGTYPE Operation against a key")),
        ("redis", ValueError("not a storage problem")),
    ],
)
def test_errors_about_the_request_are_not_storage_failures(service: str, error: Exception) -> None:
    before = storage_errors(service)
    with pytest.raises(type(error)), metrics.storage_errors_counted(service):  # type: ignore[arg-type]
        raise error
    assert storage_errors(service) == before


def test_a_block_that_succeeds_counts_nothing() -> None:
    before = storage_errors("postgres")
    with metrics.storage_errors_counted("postgres"):
        pass
    assert storage_errors("postgres") == before
