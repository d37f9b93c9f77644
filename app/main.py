"""Entry point: `streamlit run app/main.py`.

Streamlit serves `router.py` (the router and login gate) and, on the same port, the routes below:
/healthz (JSON, 200 or 503) and /metrics (Prometheus text format).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import streamlit as st
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core import database, llm, readiness, services
from core import metrics as _registered  # noqa: F401  (defines the metric objects)


async def healthz(request: Request) -> JSONResponse:
    healthy, body = await anyio.to_thread.run_sync(readiness.report)
    return JSONResponse(body, status_code=200 if healthy else 503)


async def metrics(request: Request) -> Response:
    # Prometheus text format by default; OpenMetrics when the scraper asks for it.
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(REGISTRY), headers={"Content-Type": content_type})


@asynccontextmanager
async def lifespan(app: st.App) -> AsyncIterator[None]:
    yield
    # uvicorn ends a SIGTERM by re-raising it, which skips atexit: leave the embedded
    # PostgreSQL and Redis here so the last process out stops them cleanly, and free the
    # embedded model.
    await anyio.to_thread.run_sync(database.reset)
    await anyio.to_thread.run_sync(services.shutdown)
    await anyio.to_thread.run_sync(llm.close_models)


app = st.App(
    "router.py",
    routes=[Route("/healthz", healthz), Route("/metrics", metrics)],
    lifespan=lifespan,
)
