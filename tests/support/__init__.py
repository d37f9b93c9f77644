"""Helpers for tests that run the real app as a separate process (e2e, observability)."""
