"""An API that is not Context Services, for `servermode serve --config` (issue 10).

Orders, reports and schema migrations; every route takes ``?delay=SECONDS`` (at most 10) and
answers what it did. Served as ``--app orders_app:app --app-dir tests/e2e``.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_DELAY = 10.0


async def _work(request: Request, what: str) -> JSONResponse:
    try:
        delay = float(request.query_params.get("delay", "0"))
    except ValueError:
        delay = -1
    if not 0 <= delay <= MAX_DELAY:
        return JSONResponse({"error": f"delay: 0 to {MAX_DELAY:g} seconds"}, status_code=400)
    await asyncio.sleep(delay)
    return JSONResponse({"did": what})


async def order(request: Request) -> JSONResponse:
    return await _work(request, f"{request.method} order {request.path_params.get('id', '')}")


async def report(request: Request) -> JSONResponse:
    return await _work(request, "report")


async def migration(request: Request) -> JSONResponse:
    return await _work(request, "migration")


app = Starlette(
    routes=[
        Route("/api/orders", order, methods=["GET", "POST"]),
        Route("/api/orders/{id}", order, methods=["GET", "PUT"]),
        Route("/api/reports", report, methods=["GET"]),
        Route("/admin/migrations", migration, methods=["POST"]),
    ]
)
