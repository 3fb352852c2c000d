"""The controller of one instance in a fleet: the local controller's face, the fleet's rules.

:class:`FleetController` is a :class:`~servermode.core.controller.ModeController` (the HTTP
routes, the gate middleware and the status page use it unchanged) whose mode changes go
through the fleet: :meth:`set_mode` switches the whole fleet and answers once the barrier
completes; the local gate follows the fleet state (read before the first request, then on
every round); admission stays the local gate's, with no engine call on the request path.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ..audit import AuditLog
from ..controller import DrainListener, ModeController, ModeStatus
from ..hooks import Hooks
from ..machine import TimeoutPolicy
from ..modes import Mode, State, parse_mode
from ..policy import CONTEXT_SERVICES, AdmissionPolicy
from ..records import TransitionRecord, utc_now
from ..store import Store
from ..window import Window, asked_window
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
        lame_duck: float = 0.0,
        hooks: Hooks | None = None,
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
            lame_duck=lame_duck,
            hooks=hooks,
        )
        self.engine = engine
        # The node's records reach the audit log and the subscribers (hooks, webhooks), as
        # the lone controller's do; its drains run the application's hooks.
        self.node = GateNode(
            self.gate, self.store, _Publishing(self), hooks=self.hooks, clock=clock
        )
        self.fleet = FleetMember(
            engine,
            self.node,
            instance=instance,
            initial_mode=self.initial_mode,
            drain_timeout=drain_timeout,
            timeout_policy=timeout_policy,
            lame_duck=self.lame_duck,
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
        """Switch the fleet (see :meth:`FleetMember.switch`); ``until`` and ``start_at`` are
        the lone controller's, for the whole fleet: the window is part of the fleet state, and
        any instance makes its switches when their time comes."""
        target = parse_mode(mode)
        window = asked_window(target, start_at, until, reason, utc_now())
        if not self._joined:
            raise RuntimeError("FleetController.start() must be awaited before set_mode()")
        return await self.fleet.switch(
            target,
            actor=actor,
            client=client,
            request_id=request_id,
            reason=reason,
            window=window,
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

    @property
    def window(self) -> Window | None:
        """The fleet's maintenance window, begun or ahead, as last read (None out of it)."""
        known = self.fleet.known
        return known.window if known is not None and self.fleet.out is None else None

    @property
    def lame_duck_until(self) -> datetime | None:
        """While the fleet's switch to maintenance is in its lame duck: when it drains."""
        known = self.fleet.known
        if known is None or self.fleet.out is not None or not self.fleet.in_lame_duck(known):
            return None
        return _utc(known.lame_duck_until)

    @property
    def reason(self) -> str | None:
        """The reason given for the fleet's mode, or for its switch under way."""
        known = self.fleet.known
        return known.reason if known is not None and self.fleet.out is None else None

    def _dry_run_facts(self) -> tuple[State, bool, dict[str, int]]:
        """A dry run plans a fleet switch: the fleet's state, and the requests in flight summed
        over the live instances as last read (their heartbeats; the rates stay this
        instance's)."""
        known = self.fleet.known
        if known is None:
            return super()._dry_run_facts()
        in_flight: Counter[str] = Counter()
        for beat in self.fleet.members:
            in_flight.update(beat.in_flight)
        if not self.fleet.members:  # not read yet: this instance's own
            in_flight.update(self.gate.in_flight())
        return known.state, known.is_draining, dict(in_flight)

    def status(self) -> ModeStatus:
        base = super().status()
        known = self.fleet.known
        since = _utc(self.fleet.since) or base.since
        # As alone: drain fields only once this instance drains (not in the lame duck).
        if known is None or not known.is_draining or not base.state.is_draining:
            return replace(base, since=since)
        return replace(
            base,
            since=since,
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
