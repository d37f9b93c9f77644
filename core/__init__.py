"""Ledger's core: plain functions over PostgreSQL, Redis and the LLM.

Pages, the CLI and notebooks all import from here. Nothing is connected at import time:
settings, engines and clients are built on first use by the factories in ``config``,
``services`` and ``db``.
"""

__version__ = "0.1.0"
