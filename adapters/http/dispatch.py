"""Serve the admin routes beside any ASGI app, at their own paths."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["AdminDispatch"]


class AdminDispatch:
    """Send requests for the admin paths to ``admin`` and everything else to ``app``.

    The lifespan goes to ``app`` alone: the admin routes have no life of their own (the gate
    middleware starts and closes the controller they share).
    """

    def __init__(self, admin: ASGIApp, app: ASGIApp, paths: Iterable[str]) -> None:
        self.admin = admin
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self._is_admin(scope["path"]):
            await self.admin(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _is_admin(self, path: str) -> bool:
        # "/server/status/" too: the admin app redirects it to the canonical path.
        return path in self.paths or path.rstrip("/") in self.paths
