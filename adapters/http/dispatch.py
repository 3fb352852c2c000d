"""Serve the admin routes beside any ASGI app, at their own paths."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .routes import owns

__all__ = ["AdminDispatch"]


class AdminDispatch:
    """Send requests for servermode's paths to ``admin`` and everything else to ``app``.

    The test is :func:`.routes.owns`, the one the classification uses: a request reaches the
    admin routes exactly when it is classified as servermode's own (``/server/status/`` or
    ``/Server/Status`` are the app's, and its rules classify them).

    The lifespan goes to ``app`` alone: the admin routes have no life of their own (the gate
    middleware starts and closes the controller they share).
    """

    def __init__(self, admin: ASGIApp, app: ASGIApp) -> None:
        self.admin = admin
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and owns(scope["path"]):
            await self.admin(scope, receive, send)
        else:
            await self.app(scope, receive, send)
