"""A Redis that answers but refuses a write is reported as a refusal, with the reason an
administrator can act on; a Redis that does not answer stays 'not reachable'."""

from __future__ import annotations

import pytest
import redis

from core import turn
from core.errors import ServiceUnavailable, StorageRefused

CLIENT = redis.Redis(host="127.0.0.1", port=6390)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (
            redis.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
            "it is out of memory (maxmemory reached)",
        ),
        (
            redis.ResponseError("MISCONF Redis is configured to save RDB snapshots, but..."),
            "it cannot write to its disk (full or not writable; Redis says: MISCONF Redis is",
        ),
        (redis.ReadOnlyError("You can't write against a read only replica."), "read-only replica"),
    ],
    ids=["oom", "misconf", "readonly"],
)
def test_a_refused_write_says_redis_refused_and_why(error: redis.RedisError, says: str) -> None:
    problem = turn.redis_unavailable(CLIENT, error)
    assert isinstance(problem, StorageRefused) and isinstance(problem, ServiceUnavailable)
    assert str(problem).startswith("Redis at redis://127.0.0.1:6390/0 refused to store it: ")
    assert says in str(problem)


def test_a_lost_connection_is_still_not_reachable() -> None:
    problem = turn.redis_unavailable(CLIENT, redis.ConnectionError("Connection refused."))
    assert not isinstance(problem, StorageRefused)
    assert str(problem) == "Redis is not reachable at redis://127.0.0.1:6390/0: Connection refused."
