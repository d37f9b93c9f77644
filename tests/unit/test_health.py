"""/healthz's report: parallel probes, a hard deadline, one thread per hung probe."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from core import readiness


def check_ok() -> readiness.Check:
    return readiness.Check("ok", True, "ok", 0.1)


def check_down() -> readiness.Check:
    return readiness.Check(
        "down", False, "Redis is not reachable at redis://x:6379/0: refused", 0.2
    )


def check_broken() -> readiness.Check:
    raise RuntimeError("probe bug")


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown so hung probes finish."""
    event = threading.Event()
    yield event
    event.set()


def test_all_probes_ok_is_healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness, "PROBES", [check_ok])
    healthy, body = readiness.report()
    assert healthy
    assert body == {"status": "ok", "checks": {"ok": {"state": "ok", "ms": 0.1}}}


def test_one_failing_probe_makes_the_report_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness, "PROBES", [check_ok, check_down])
    healthy, body = readiness.report()
    assert not healthy
    assert body["status"] == "unavailable"
    assert body["checks"]["ok"]["state"] == "ok"
    assert body["checks"]["down"]["state"] == "unavailable"


def test_the_report_shows_no_detail_but_the_probes_keep_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """/healthz answers anyone: no URL, no error text, no exception name in its body. The
    details stay with the probes, for the Status page."""
    monkeypatch.setattr(readiness, "PROBES", [check_down, check_broken])
    _, body = readiness.report()
    text = json.dumps(body)
    assert "redis://" not in text and "refused" not in text and "RuntimeError" not in text
    assert {name: set(check) for name, check in body["checks"].items()} == {
        "down": {"state", "ms"},
        "broken": {"state", "ms"},
    }
    details = [check.detail for check in readiness.run_probes()]
    assert (
        details[0].startswith("Redis is not reachable") and details[1] == "RuntimeError: probe bug"
    )


def test_a_probe_that_raises_is_reported_as_failed_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(readiness, "PROBES", [check_broken])
    healthy, body = readiness.report()
    assert not healthy
    assert body["checks"]["broken"] == {"state": "unavailable", "ms": 0.0}


def test_a_hung_probe_cannot_hold_the_report_past_its_deadline(
    monkeypatch: pytest.MonkeyPatch, release: threading.Event
) -> None:
    def check_hung() -> readiness.Check:
        release.wait(30)
        return readiness.Check("hung", True, "late", 0.0)

    monkeypatch.setattr(readiness, "PROBES", [check_ok, check_hung])
    started = time.perf_counter()
    healthy, body = readiness.report(timeout=0.3)
    assert time.perf_counter() - started < 2.0
    assert not healthy
    assert body["checks"]["hung"] == {"state": "timeout", "ms": 300.0}
    assert body["checks"]["ok"]["state"] == "ok"
    json.dumps(body)  # the body is what /healthz sends


def test_a_hung_probe_keeps_one_thread_across_reports_and_recovers_when_it_answers(
    monkeypatch: pytest.MonkeyPatch, release: threading.Event
) -> None:
    calls = []

    def check_slow() -> readiness.Check:
        calls.append(1)
        release.wait(30)
        return readiness.Check("slow", True, "ok", 5.0)

    monkeypatch.setattr(readiness, "PROBES", [check_slow])
    for _ in range(3):
        assert readiness.report(timeout=0.05)[0] is False
    assert len(calls) == 1
    assert sum(t.name == "health-slow" for t in threading.enumerate()) == 1

    release.set()
    healthy, body = readiness.report(timeout=5)
    assert healthy
    assert body["checks"]["slow"]["state"] == "ok"


def test_probe_names_drop_the_check_prefix() -> None:
    assert [readiness.probe_name(p) for p in (readiness.check_postgres, readiness.check_redis)] == [
        "postgres",
        "redis",
    ]
