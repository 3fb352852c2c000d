"""The first thing an operator needs from a restarted service: the mode it is in.

The mode is kept across restarts, so a service stopped in maintenance comes back refusing its
production traffic. :class:`ReportStart` logs the mode in force once the application has
started (and the controller has restored it), as a warning when that is maintenance.
"""

from __future__ import annotations

from servermode.core import Mode, ModeController
from servermode.core.logs import get_logger
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RESTORED_EVENT", "ReportStart"]

RESTORED_EVENT = "mode_restored"

_log = get_logger("servermode")


class ReportStart:
    """Wraps the service's ASGI app; logs :data:`RESTORED_EVENT` when its startup completes."""

    def __init__(self, app: ASGIApp, controller: ModeController, state: str) -> None:
        self.app = app
        self.controller = controller
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def reporting(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.report()
            await send(message)

        await self.app(scope, receive, reporting)

    def report(self) -> None:
        status = self.controller.status()
        policy = self.controller.policy
        refused = [c for c in policy.counted_categories if not policy.admits(status.state, c)]
        fields = {
            "mode": status.mode.value,
            "state": status.state.value,
            "since": status.since.isoformat(),
            "kept_in": self.state,
            "refused": refused,
        }
        if status.mode is Mode.MAINTENANCE:
            _log.warning(
                RESTORED_EVENT,
                **fields,
                note="in maintenance mode: production traffic is refused until "
                "`servermode set production`",
            )
        else:
            _log.info(RESTORED_EVENT, **fields)
