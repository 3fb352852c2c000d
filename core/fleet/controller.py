"""The controller of one instance in a fleet: the local controller's face, the fleet's rules.

:class:`FleetController` is a :class:`~servermode.core.controller.ModeController` (the HTTP
routes, the gate middleware and the status page use it unchanged) whose mode changes go
through the fleet: :meth:`set_mode` switches the whole fleet and answers once the barrier
completes; the local gate follows the fleet state (read before the first request, then on
every round); admission stays the local gate's, with no engine call on the request path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ..audit import AuditLog
from ..controller import DrainListener, ModeController, ModeStatus
from ..machine import TimeoutPolicy
from ..modes import Mode
from ..policy import CONTEXT_SERVICES, AdmissionPolicy
from ..records import TransitionRecord
from ..store import Store
from .engine import FleetEngine
from .member import FleetMember
from .node import GateNode

__all__ = ["FleetController"]


class FleetController(ModeController):
    """A mode controller whose mode is the fleet's (see :class:`FleetMember` for the rules).

    Parameters beyond :class:`ModeController`'s: ``engine`` (the shared fleet engine),
    ``instance`` (this instance's unique name), ``heartbeat_ttl`` and ``period`` (seconds),
    ``clock`` (wall clock). ``drain_timeout`` and ``timeout_policy`` apply to the switches
    started on this instance, fleet-wide.
    """

    def __init__(
        self,
        engine: FleetEngine,
        store: Store | None = None,
        *,
        instance: str,
        policy: AdmissionPolicy = CONTEXT_SERVICES,
        initial_mode: Mode | str = Mode.PRODUCTION,
        drain_timeout: float = 60.0,
        timeout_policy: TimeoutPolicy | str = TimeoutPolicy.FORCE,
        refusal_retry_after: int = 60,
        audit: AuditLog | None = None,
        heartbeat_ttl: float = 5.0,
        period: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            store,
            policy=policy,
            initial_mode=initial_mode,
            drain_timeout=drain_timeout,
            timeout_policy=timeout_policy,
            refusal_retry_after=refusal_retry_after,
            audit=audit,
        )
        self.engine = engine
        # The node's records reach the audit log and the subscribers (hooks, webhooks), as
        # the lone controller's do.
        self.node = GateNode(self.gate, self.store, _Publishing(self), clock=clock)
        self.fleet = FleetMember(
            engine,
            self.node,
            instance=instance,
            initial_mode=self.initial_mode,
            drain_timeout=drain_timeout,
            timeout_policy=timeout_policy,
            heartbeat_ttl=heartbeat_ttl,
            period=period,
            clock=clock,
        )
        self._joined = False

    @property
    def instance(self) -> str:
        return self.fleet.instance

    def add_drain_listener(self, listener: DrainListener) -> None:
        self.node.listeners.append(listener)

    async def start(self) -> TransitionRecord | None:
        """Join the fleet: the gate takes the fleet's state before the first request.

        Raises FleetEngineUnavailable (a StoreError) when the engine cannot be reached.
        """
        if self._joined:
            return None
        await self.fleet.start()
        self.fleet.run_in_background()
        self._joined = True
        return None

    async def close(self) -> None:
        """Leave the fleet (the barrier stops waiting for this instance) and close up."""
        if self._joined:
            self._joined = False
            await self.fleet.stop()
        await self.engine.close()
        await super().close()

    async def set_mode(
        self,
        mode: Mode | str,
        *,
        actor: str | None = None,
        client: str | None = None,
        request_id: str | None = None,
        reason: str | None = None,
        until: datetime | None = None,
        start_at: datetime | None = None,
    ) -> TransitionRecord:
        """Switch the fleet (see :meth:`FleetMember.switch`).

        Timed windows are one instance's for now (a window is not yet part of the fleet
        state): ``until`` and ``start_at`` raise ValueError here.
        """
        if until is not None or start_at is not None:
            raise ValueError("timed maintenance windows are not available in fleet mode yet")
        if not self._joined:
            raise RuntimeError("FleetController.start() must be awaited before set_mode()")
        return await self.fleet.switch(
            mode, actor=actor, client=client, request_id=request_id, reason=reason
        )

    async def switch_instance(
        self,
        instance: str,
        mode: Mode | str,
        *,
        actor: str | None = None,
        client: str | None = None,
        request_id: str | None = None,
        reason: str | None = None,
    ) -> TransitionRecord:
        """Put one instance alone in ``mode``, or back (see :meth:`FleetMember.switch_instance`)."""
        if not self._joined:
            raise RuntimeError("FleetController.start() must be awaited before switch_instance()")
        return await self.fleet.switch_instance(
            instance, mode, actor=actor, client=client, request_id=request_id, reason=reason
        )

    async def cancel(
        self, *, actor: str | None = None, reason: str | None = None
    ) -> TransitionRecord | None:
        """Cancel the fleet's switch under way (see :meth:`FleetMember.cancel`)."""
        if not self._joined:
            return None
        return await self.fleet.cancel(actor=actor, reason=reason)

    def status(self) -> ModeStatus:
        base = super().status()
        known = self.fleet.known
        since = _utc(self.fleet.since) or base.since
        if known is None or not known.is_draining:
            return replace(base, since=since)
        return ModeStatus(
            mode=base.mode,
            state=base.state,
            since=since,
            in_flight=base.in_flight,
            drain_timeout=base.drain_timeout,
            timeout_policy=known.policy,
            target=known.target,
            drain_started=_utc(known.started),
            deadline=_utc(known.deadline),
        )


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class _Publishing(AuditLog):
    """An audit log that emits through the controller: the audit and its subscribers."""

    def __init__(self, controller: ModeController) -> None:
        self._controller = controller

    def emit(self, record: TransitionRecord, **extra: Any) -> None:
        self._controller._emit(record)
