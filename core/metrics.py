"""Prometheus metric objects, defined once per process when this module is first imported.

Core records them (chat turns, logins, storage errors), so the app and the CLI count alike;
the app exposes them at /metrics. Names follow Prometheus conventions: base units (seconds),
``_total`` for counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
_RATE_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 400)

LLM_REQUESTS = Counter(
    "ledger_llm_requests_total",
    "LLM requests by model, backend and outcome (ok, error, cancelled).",
    ["model", "backend", "outcome"],
)
LLM_TTFT = Histogram(
    "ledger_llm_time_to_first_token_seconds",
    "Time from sending a request to the first streamed token.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
LLM_DURATION = Histogram(
    "ledger_llm_request_duration_seconds",
    "Whole duration of an LLM request, stream included.",
    ["model"],
    buckets=_DURATION_BUCKETS,
)
LLM_PROMPT_TOKENS = Counter(
    "ledger_llm_prompt_tokens_total", "Prompt tokens sent to models.", ["model"]
)
LLM_COMPLETION_TOKENS = Counter(
    "ledger_llm_completion_tokens_total", "Completion tokens received from models.", ["model"]
)
LLM_TOKENS_PER_SECOND = Histogram(
    "ledger_llm_tokens_per_second",
    "Generation speed of completed replies (completion tokens / generation seconds).",
    ["model"],
    buckets=_RATE_BUCKETS,
)
LLM_ACTIVE_STREAMS = Gauge("ledger_llm_active_streams", "Replies being streamed right now.")
LOGINS = Counter(
    "ledger_logins_total",
    "Login attempts by outcome (ok, bad_credentials, locked, disabled).",
    ["outcome"],
)
LOCKOUTS = Counter("ledger_lockouts_total", "Accounts locked after repeated failed logins.")
QUOTA_REFUSALS = Counter(
    "ledger_quota_refusals_total", "Prompts refused because the daily token quota was used up."
)
LLM_HOST_UP = Gauge(
    "ledger_llm_host_up", "1 while an Ollama host of the pool is taken as up, else 0.", ["host"]
)
LLM_HOST_ACTIVE = Gauge(
    "ledger_llm_host_active", "Replies streaming from each Ollama host (this process).", ["host"]
)
LLM_FAILOVERS = Counter(
    "ledger_llm_failovers_total",
    "Replies a host could not start, passed on to the next host of the pool.",
    ["host"],
)
DRAINING = Gauge(
    "ledger_draining", "1 while this process drains (SIGTERM: replies finish, no new browsers)."
)
REPLIES_RECOVERED = Counter(
    "ledger_replies_recovered_total",
    "Partial replies saved from a draft after the process writing them stopped.",
)
STORAGE_ERRORS = Counter(
    "ledger_storage_errors_total",
    "Failures talking to a backing store, by service (postgres, redis).",
    ["service"],
)

# --- storage errors ------------------------------------------------------------------------

StorageService = Literal["postgres", "redis"]
STORAGE_SERVICES: tuple[StorageService, ...] = ("postgres", "redis")

# Both series exist from the first scrape, so rate() and alerts see 0 rather than nothing.
for _service in STORAGE_SERVICES:
    STORAGE_ERRORS.labels(service=_service)


def record_storage_error(service: StorageService) -> None:
    """Count one failure to reach or use PostgreSQL or Redis."""
    STORAGE_ERRORS.labels(service=service).inc()


def is_storage_failure(service: StorageService, exc: BaseException) -> bool:
    """True when ``exc`` means the store itself failed (unreachable, timed out, broke off).

    Errors that say something about the request instead (a unique violation, a wrong type
    in a Redis command) are not storage failures and are not counted.
    """
    from core.errors import ServiceUnavailable

    if isinstance(exc, ServiceUnavailable):
        return True
    if service == "redis":
        import redis

        return isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError)
    import psycopg
    from sqlalchemy import exc as sa_exc

    return isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.TimeoutError
        | psycopg.OperationalError
        | psycopg.InterfaceError
        | OSError,
    )


@contextmanager
def storage_errors_counted(service: StorageService) -> Iterator[None]:
    """Count a storage failure raised inside the block, then let it propagate unchanged.

    ``with metrics.storage_errors_counted("redis"): history.append(r, ...)``
    """
    try:
        yield
    except Exception as exc:
        if is_storage_failure(service, exc):
            record_storage_error(service)
        raise
