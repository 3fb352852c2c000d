"""An ASGI app that misbehaves on purpose, served behind the gate by the fault tests.

Every route is a profile request (counted, production only) under the Context Services rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from servermode.adapters.http.problems import ERROR_HANDLERS
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def _after(request: Request) -> float:
    return float(request.query_params.get("after", "0"))


async def raises(request: Request) -> Response:
    await asyncio.sleep(_after(request))
    raise RuntimeError("the application failed")


async def cancelled(request: Request) -> Response:
    await asyncio.sleep(_after(request))
    raise asyncio.CancelledError


async def hangs(request: Request) -> Response:
    """Never answers, and ignores its client going away."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def slow(request: Request) -> Response:
    """Answers after ``after`` seconds, whether its client is still there or not."""
    await asyncio.sleep(_after(request))
    return JSONResponse({"slow": True})


async def streams(request: Request) -> Response:
    """A chunk every 20 ms, up to 500: a client that stops reading goes away mid-stream."""

    async def chunks() -> AsyncIterator[bytes]:
        for n in range(500):
            yield f"chunk {n}\n".encode()
            await asyncio.sleep(0.02)

    return StreamingResponse(chunks(), media_type="text/plain")


app = Starlette(
    routes=[
        Route("/profiles/raise", raises),
        Route("/profiles/cancel", cancelled),
        Route("/profiles/hang", hangs),
        Route("/profiles/slow", slow),
        Route("/profiles/stream", streams),
    ],
    exception_handlers=ERROR_HANDLERS,
)
