"""Entry point: `streamlit run app/main.py`.

Streamlit serves `router.py` (the router and login gate) and, on the same port, the routes below:
/healthz (JSON, 200 or 503; states only, no details), /healthz/serving (200, or 503 while the
process drains: what a load balancer asks) and /metrics (Prometheus text format).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import streamlit as st
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from streamlit.runtime import Runtime

from app import drain
from core import database, llm, readiness, services
from core import metrics as _registered  # noqa: F401  (defines the metric objects)
from core.config import get_settings


async def healthz(request: Request) -> JSONResponse:
    healthy, body = await anyio.to_thread.run_sync(readiness.report)
    if drain.draining():
        healthy, body = False, {**body, "status": "draining"}
    return JSONResponse(body, status_code=200 if healthy else 503)


async def serving(request: Request) -> JSONResponse:
    """What a load balancer asks: does this process take new browsers? (Storage is the same
    for every process, so its state would take them all out at once: /healthz says that.)"""
    if drain.draining():
        return JSONResponse({"status": "draining", "busy": drain.busy()}, status_code=503)
    return JSONResponse({"status": "serving", "busy": drain.busy()})


async def metrics(request: Request) -> Response:
    # Prometheus text format by default; OpenMetrics when the scraper asks for it.
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(REGISTRY), headers={"Content-Type": content_type})


async def sweep_media() -> None:
    """Drop download files no session shows any more, every DOWNLOAD_LINK_SECONDS.

    A file built for a download button (a session export) is served at /media/<id> to whoever
    has the link, login cookie or not; Streamlit drops it when a script run ends after it is
    no longer shown, which an idle app may not do for hours. This sweep bounds its life.
    """
    while True:
        await asyncio.sleep(get_settings().download_link_seconds)
        if Runtime.exists():
            Runtime.instance().media_file_mgr.remove_orphaned_files()


@asynccontextmanager
async def lifespan(app: st.App) -> AsyncIterator[None]:
    sweeper = asyncio.get_running_loop().create_task(sweep_media())
    drain.install()  # uvicorn's SIGTERM handler is in place by now: drain first
    yield
    sweeper.cancel()
    # uvicorn ends a SIGTERM by re-raising it, which skips atexit: leave the embedded
    # PostgreSQL and Redis here so the last process out stops them cleanly, and free the
    # embedded model.
    await anyio.to_thread.run_sync(database.reset)
    await anyio.to_thread.run_sync(services.shutdown)
    await anyio.to_thread.run_sync(llm.close_models)


app = st.App(
    "router.py",
    routes=[
        Route("/healthz", healthz),
        Route("/healthz/serving", serving),
        Route("/metrics", metrics),
    ],
    lifespan=lifespan,
)
