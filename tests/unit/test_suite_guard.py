"""A test run that selects nothing fails loudly instead of passing by running nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(
    "selection",
    [
        ["tests/unit/test_suite_guard.py", "-k", "no_test_has_this_name"],
        ["tests/unit/test_suite_guard.py", "-m", "e2e"],  # a marker nothing here carries
    ],
    ids=["keyword", "marker"],
)
def test_an_empty_selection_fails_with_a_reason(selection: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode not in (0, 5)  # 5 is pytest's own "no tests ran"
    assert "no tests were collected" in result.stdout + result.stderr
