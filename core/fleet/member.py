"""One instance of a fleet: follows the fleet state, drains, reports, completes barriers.

Each instance runs a :class:`FleetMember` over its :class:`~.node.LocalNode` and the shared
:class:`~.engine.FleetEngine`. A round (:meth:`FleetMember.sync`) reads the fleet state and
brings the local side in line with it:

- a new draining epoch: the local gate enters the draining state (the same 503s as a local
  switch) and stays there until the fleet completes, whatever the local drain does;
- the local drain ended (drained, or its deadline passed): report it for that epoch;
- every live instance reported, or the deadline passed: complete the switch by a
  compare-and-set to the next epoch (any instance may; exactly one wins), with the record;
- a steady state: settle the local side in it (saved, then admitted under, then audited);
- a steady state whose maintenance window's time has come: start the switch it asks for
  (a compare-and-set, as any switch: of the instances that see it due, one starts it).

A drain with a lame duck begins locally at its ``lame_duck_until`` (until then the gate
admits and readiness fails), and after the application's before-drain hooks have run.

Rounds run every ``period`` seconds and whenever the engine or the local drain wakes the
member. Admission never waits for any of this: the gate is local.

Losing the engine: the member keeps the last fleet state it knew (a draining gate stays
draining: it never admits a request in a mode the fleet may have left), refuses switches
with :class:`~.engine.FleetEngineUnavailable`, and reconciles at the first round that reaches
the engine again. An engine that comes back without a fleet state is re-seeded with what the
member knew (a compare-and-set on the absent state: one instance writes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import structlog

from ..controller import WINDOW_RETRY
from ..errors import ModeChangeCancelled, ModeChangeRolledBack, SwitchInProgress
from ..machine import TimeoutPolicy, Trigger
from ..modes import Mode, State, parse_mode
from ..records import Outcome, TransitionRecord, utc_now
from ..window import ACTOR as SCHEDULE
from ..window import Window, due_event
from .barrier import (
    barrier,
    cancellation,
    completion,
    draining_to,
    switch_state,
    window_change,
)
from .engine import FleetEngine, FleetEngineUnavailable, NoSuchInstance, Wake
from .node import LocalDrain, LocalNode
from .records import (
    DrainReport,
    FleetOutcome,
    FleetRecord,
    FleetState,
    Heartbeat,
    InstanceOut,
    ReportOutcome,
)

__all__ = ["FleetMember"]

_log = structlog.get_logger("servermode.fleet")

# How a completed fleet switch is recorded in each instance's local history.
_LOCAL_OUTCOME = {
    FleetOutcome.COMPLETED: (Outcome.COMPLETED, Trigger.DRAINED),
    FleetOutcome.FORCED: (Outcome.FORCED, Trigger.DRAIN_TIMED_OUT),
    FleetOutcome.ROLLED_BACK: (Outcome.ROLLED_BACK, Trigger.DRAIN_TIMED_OUT),
    FleetOutcome.CANCELLED: (Outcome.CANCELLED, Trigger.CANCEL),
}


def _lame_duck_seconds(fleet: FleetState) -> float:
    if fleet.lame_duck_until is None or fleet.started is None:
        return 0.0
    return max(0.0, fleet.lame_duck_until - fleet.started)


#: How a record of a change that moved no state names its trigger.
_NOTED_TRIGGER: dict[Outcome, Callable[[Mode], str | None]] = {
    Outcome.REFUSED: lambda target: f"start_{target.value}",
    Outcome.NOOP: lambda target: None,
    Outcome.SCHEDULED: lambda target: None,
    Outcome.CANCELLED: lambda target: Trigger.CANCEL.value,
}

#: The fleet outcomes that end a switch (a fleet record of one of them tells a switch).
_SWITCH_ENDS = frozenset(_LOCAL_OUTCOME) | {FleetOutcome.INITIALIZED}

#: How many times a change asked for looks again when another change came first.
_CHANGE_ATTEMPTS = 3

#: How many of the newest fleet records an instance looks through for the record of a switch
#: it settles late (the log holds every instance's outcome: a record is O(fleet) to read).
_RECORDS_LOOKED_BACK = 16


@dataclass(slots=True)
class _CatchingUp:
    """A local drain toward the fleet's steady state, outside any fleet switch."""

    target: State
    drain: LocalDrain
    deadline: float  # wall clock


@dataclass(slots=True)
class _Following:
    """The fleet drain this instance follows: its epoch, its local drain, its report.

    ``drain`` is None until the local drain begins: during the switch's lame duck, and while
    the application's before-drain hooks run (``preparing``); the gate admits as before.
    """

    fleet: FleetState
    drain: LocalDrain | None = None
    preparing: asyncio.Task[None] | None = None
    report: DrainReport | None = None
    client: str | None = None
    request_id: str | None = None
    waiters: list[asyncio.Future[TransitionRecord]] = field(default_factory=list)

    @property
    def epoch(self) -> int:
        return self.fleet.epoch


class FleetMember:
    """The fleet logic of one instance.

    Parameters:
        engine: the shared fleet engine.
        node: this instance's local side.
        instance: this instance's name in the fleet (unique: host and pid by default).
        initial_mode: the mode a fleet seeded by this instance starts in.
        drain_timeout: seconds a switch started here gives the fleet to drain.
        timeout_policy: what a switch started here does at its deadline (fleet-wide).
        lame_duck: seconds a switch to maintenance started here keeps every instance admitting
            while their readiness fails, before the fleet drains (fleet-wide).
        heartbeat_ttl: seconds a heartbeat lives; an instance silent longer is left out.
        period: seconds between rounds when nothing wakes the member.
        report_grace: seconds past the deadline the barrier still waits for live instances'
            timed-out reports (so that the record names their stragglers).
        check_every: while the fleet drains, the instance that started the switch checks the
            barrier at every round and at every report; the others (who complete it if the
            starter dies) every ``check_every`` rounds, and repeat their report as often (in
            case the engine lost it). So a report wakes one instance, not the fleet.
        clock: the wall clock (seconds); deadlines are wall-clock instants.
    """

    def __init__(
        self,
        engine: FleetEngine,
        node: LocalNode,
        *,
        instance: str,
        initial_mode: Mode | str = Mode.PRODUCTION,
        drain_timeout: float = 60.0,
        timeout_policy: TimeoutPolicy | str = TimeoutPolicy.FORCE,
        lame_duck: float = 0.0,
        heartbeat_ttl: float = 5.0,
        period: float = 0.5,
        report_grace: float | None = None,
        check_every: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if heartbeat_ttl <= period:
            raise ValueError(f"heartbeat_ttl ({heartbeat_ttl}) must exceed period ({period})")
        self.engine = engine
        self.node = node
        self.instance = instance
        self.initial_mode = parse_mode(initial_mode)
        self.drain_timeout = float(drain_timeout)
        self.timeout_policy = TimeoutPolicy(timeout_policy)
        self.lame_duck = float(lame_duck)
        self.heartbeat_ttl = heartbeat_ttl
        self.period = period
        self.report_grace = period if report_grace is None else report_grace
        self.check_every = max(1, check_every)
        self.clock = clock
        #: The last fleet state read from the engine (what the instance serves under).
        self.known: FleetState | None = None
        #: Why the engine is unreachable, or None while it answers.
        self.lost: str | None = None
        self.lost_since: float | None = None
        #: The live instances as last read (by :meth:`refresh_members`: status pages).
        self.members: list[Heartbeat] = []
        #: While the fleet drains: the live instances that had not reported at the last look.
        self.waiting: set[str] = set()
        self._members_read = -1e18
        self._following: _Following | None = None
        self._catching: _CatchingUp | None = None
        #: This instance's own mode while it is out of the fleet (None: it follows the fleet).
        self.out: InstanceOut | None = None
        self._out_report: DrainReport | None = None
        self._back_in: InstanceOut | None = None  # set when it was out, until it is back
        self._since = clock()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._rounds = 0
        self._round_failed = False  # the last round raised (other than a lost engine)

    @property
    def since(self) -> float:
        """When the local side entered the state it is in (wall clock)."""
        return self._since

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> FleetState:
        """Join the fleet: read (or seed) the fleet state and follow it, before any request.

        Raises FleetEngineUnavailable when the engine cannot be reached: an instance that does
        not know the fleet's mode must not admit anything.
        """
        async with self._lock:
            fleet = await self.engine.load()
            if fleet is None:
                fleet = await self._reseed()
            await self._follow(fleet)
            if not fleet.is_draining:  # a window whose time came while no instance ran
                await self._window_due(fleet)
            await self._beat()
        self.engine.subscribe(self.instance, self._woken)
        _log.info("fleet_joined", instance=self.instance, epoch=fleet.epoch, state=fleet.state)
        return fleet

    def _woken(self, what: Wake) -> None:
        if what is Wake.REPORT and not self._checks_every_round():
            return  # the starter completes the barrier; the others look on their period
        self._wake.set()

    def _checks_every_round(self) -> bool:
        known = self.known
        return known is not None and known.is_draining and known.starter == self.instance

    def run_in_background(self) -> None:
        """Run rounds every period (and on wake-ups) until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        # A flag, not only the cancellation: a library under a call may swallow a cancellation
        # that meets its own timeout (a lost engine call), and the loop must still end.
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_wait()):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.sync()
                self._round_failed = False
            except Exception:  # a round must never end the loop; the next one retries
                _log.exception("fleet_round_failed", instance=self.instance)
                self._round_failed = True

    def _next_wait(self) -> float:
        wake = self._next_moment()
        if wake is None:
            return self.period
        left = wake - self.clock()
        if left <= 0 and (self.lost is not None or self._round_failed):
            # The round at that moment could not reach the engine (or failed otherwise: the
            # local store down): try again a period later, not at once in a loop that spins
            # on a moment already past.
            return self.period
        return max(0.0, min(self.period, left))

    def _next_moment(self) -> float | None:
        """When the next round must run, if sooner than a period: a drain's deadline (or its
        lame duck's end), a catch-up's deadline, or the fleet's window's next time (a period
        may be long: --fleet-period)."""
        following, catching = self._following, self._catching
        if following is not None and following.report is None:
            fleet = following.fleet
            wake = fleet.deadline or 0.0
            # Once the hooks run (the lame duck is over), their end wakes the member.
            lame_duck = following.drain is None and following.preparing is None
            if lame_duck and fleet.lame_duck_until is not None:
                wake = min(wake, fleet.lame_duck_until)
            return wake
        if catching is not None:
            return catching.deadline
        known = self.known
        return self._window_moment(known) if known is not None else None

    @staticmethod
    def _window_moment(fleet: FleetState) -> float | None:
        """When the switch the fleet's window asks for may be made next: at its next time, but
        not sooner than a pause after a switch rolled back (as alone: WINDOW_RETRY), so that
        a window's switch that keeps timing out leaves the fleet admitting in between."""
        moment = fleet.window.next_event() if fleet.window is not None else None
        if moment is None:
            return None
        if fleet.outcome is FleetOutcome.ROLLED_BACK:
            return max(moment.timestamp(), fleet.since + WINDOW_RETRY)
        return moment.timestamp()

    async def stop(self) -> None:
        """Stop the rounds and leave the fleet (the barrier stops waiting for this instance)."""
        task, self._task = self._task, None
        self._stopping = True
        self._wake.set()
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=self.period)
        if task is not None and not task.cancelled() and task.exception() is not None:
            _log.error("fleet_rounds_failed", instance=self.instance, error=str(task.exception()))
        with contextlib.suppress(FleetEngineUnavailable):
            await self.engine.leave(self.instance)

    # -- one round -------------------------------------------------------------------------

    async def sync(self) -> None:
        """Read the fleet state and act on it; never raises for a lost engine."""
        async with self._lock:
            self._rounds += 1
            try:
                previous = self.out
                fleet, self.out = await self.engine.load_member(self.instance)
                if previous is not None and self.out is None:
                    self._back_in = previous
                if fleet is None:
                    fleet = await self._reseed()
                self._reached()
                await self._follow(fleet)
                if not fleet.is_draining:
                    await self._window_due(fleet)
                    await self._beat()
                else:
                    periodic = self._rounds % self.check_every == 0
                    await self._report(fleet, again=periodic)
                    await self._beat()
                    if self._checks_every_round():
                        await self._complete_if_due(fleet, full=periodic)
                    elif periodic and await self._starter_gone(fleet):
                        await self._complete_if_due(fleet, full=True)
            except FleetEngineUnavailable as exc:
                self._lose(exc.reason)
                following = self._following
                if following is not None:
                    # The drain it follows begins at its lame duck's end without the engine
                    # too: every other instance drains then, and one that goes on admitting
                    # would do so in a mode the fleet may have left.
                    await self._begin_drain(following)

    def _reached(self) -> None:
        if self.lost is not None:
            _log.warning(
                "fleet_engine_back",
                instance=self.instance,
                lost_for=round(self.clock() - (self.lost_since or self.clock()), 3),
            )
            self.lost = self.lost_since = None

    def _lose(self, reason: str) -> None:
        if self.lost is None:
            _log.warning(
                "fleet_engine_lost",
                instance=self.instance,
                reason=reason,
                serving=str(self.node.state),
            )
            self.lost_since = self.clock()
        self.lost = reason

    async def _load_reached(self) -> FleetState:
        """The fleet state, re-seeded if the engine holds none; the engine answered, so it is
        no longer lost. Raises FleetEngineUnavailable when it does not answer."""
        fleet = await self.engine.load()
        if fleet is None:
            fleet = await self._reseed()
        self._reached()
        return fleet

    async def _reseed(self) -> FleetState:
        """Write the fleet state back into an engine that holds none (or seed a new fleet)."""
        now = self.clock()
        known = self.known
        if known is None:
            state = FleetState(
                epoch=1, state=self.initial_mode.state, since=now, policy=self.timeout_policy
            )
            record = FleetRecord(
                epoch=1,
                from_state=state.state,
                to_state=state.state,
                outcome=FleetOutcome.INITIALIZED,
                at=now,
                completed_by=self.instance,
            )
        else:
            state = known if known.is_draining else known.but(outcome=FleetOutcome.RESEEDED)
            record = FleetRecord(
                epoch=known.epoch,
                from_state=known.state,
                to_state=known.state,
                outcome=FleetOutcome.RESEEDED,
                at=now,
                target=known.target,
                completed_by=self.instance,
                reason=f"the engine held no fleet state; {self.instance} wrote back epoch "
                f"{known.epoch} as it knew it",
            )
        if await self.engine.compare_and_set(None, state, record):
            _log.warning(
                "fleet_seeded", instance=self.instance, outcome=record.outcome, epoch=state.epoch
            )
            return state
        loaded = await self.engine.load()
        if loaded is None:  # emptied again between the two calls: try at the next round
            raise FleetEngineUnavailable("the fleet state vanished while being re-seeded")
        return loaded

    async def _beat(self) -> None:
        known = self.known
        following = self._following
        report = following.report if following is not None else self._out_report
        out = self.out
        await self.engine.beat(
            Heartbeat(
                instance=self.instance,
                epoch=known.epoch if known else 0,
                state=self.node.state,
                in_flight=self.node.in_flight(),
                since=self._since,
                at=self.clock(),
                reported=str(report.outcome) if report is not None else None,
                out=str(out.mode) if out is not None else None,
            ),
            self.heartbeat_ttl,
        )

    # -- following the fleet ---------------------------------------------------------------

    async def _follow(self, fleet: FleetState, record: FleetRecord | None = None) -> None:
        """Bring the local side in line with ``fleet``; ``record`` is the fleet record written
        with it, when this instance wrote it (the others read it from the engine's log)."""
        self.known = fleet
        following = self._following
        if fleet.is_draining:
            if following is not None and following.epoch == fleet.epoch:
                await self._begin_drain(following)
                return
            if following is not None:  # a drain whose end this instance never saw
                await self._settle(following, fleet.mode.state, None)
            if self.out is not None:  # out of the fleet: it keeps its own mode (and says so)
                await self._catch_up(self.out.mode.state, fleet, self.out)
                return
            self._catching = None  # the fleet's drain takes over from catching up
            self._following = _Following(fleet)
            await self._begin_drain(self._following)
            return
        self.waiting = set()
        self._out_report = None
        if following is not None:
            await self._settle(following, fleet.state, fleet, record)
        else:
            out = self.out
            await self._catch_up(out.mode.state if out else fleet.state, fleet, out)
        # Refusals in the fleet's window count down to its end (not on an instance out).
        window = fleet.window if self.out is None else None
        in_force = window is not None and not window.pending and window.until is not None
        ends = window.until if in_force and window is not None else None
        self.node.show_window(
            ends.timestamp() if ends is not None and self.node.state is State.MAINTENANCE else None
        )

    async def _begin_drain(self, following: _Following) -> None:
        """Begin the local drain of the followed switch once its lame duck is over and the
        application's before-drain hooks have run (in the background: a round never waits
        for them); until then the gate admits as before. Called at every round."""
        fleet = following.fleet
        if following.drain is not None or self.in_lame_duck(fleet):
            return
        if following.preparing is None and self.node.prepares_drains:
            assert fleet.target is not None
            following.preparing = asyncio.get_running_loop().create_task(
                self.node.before_drain(fleet.target), name="servermode fleet before-drain"
            )
            following.preparing.add_done_callback(lambda _: self._wake.set())
        assert fleet.deadline is not None
        preparing = following.preparing
        # Hooks that overrun the deadline hold the drain up no longer (they go on).
        if preparing is not None and not preparing.done() and self.clock() < fleet.deadline:
            return
        drain = self.node.enter_drain(fleet.state, fleet.deadline - self.clock())
        drain.drained.add_done_callback(lambda _: self._wake.set())
        following.drain = drain
        self._since = self.clock()
        _log.info(
            "fleet_drain_followed",
            instance=self.instance,
            epoch=fleet.epoch,
            state=fleet.state,
            in_flight=drain.in_flight,
        )

    def in_lame_duck(self, fleet: FleetState | None = None) -> bool:
        """Whether the fleet's switch is in its lame duck: readiness fails, requests pass."""
        fleet = fleet if fleet is not None else self.known
        return (
            fleet is not None
            and fleet.is_draining
            and fleet.lame_duck_until is not None
            and self.clock() < fleet.lame_duck_until
        )

    async def _catch_up(self, target: State, fleet: FleetState, out: InstanceOut | None) -> None:
        """Reach steady ``target`` outside a fleet switch: the fleet's state after a switch
        missed while the engine was lost (or at start), or this instance's own mode while it
        is ``out`` of the fleet (and back). Refuse what ``target`` refuses at once, drain the
        requests of the old kind (at most ``drain_timeout``), then settle: never a jump with
        them running."""
        catching = self._catching
        if catching is not None and catching.target is not target:
            if catching.drain.source is target:  # asked back before it got there: undo
                self._catching = None
                await self.node.settle(target, self._local_record(catching, target, fleet, out))
                self._since = self.clock()
                return
            catching = self._catching = None  # aim again from here
        if catching is None:
            if self.node.state is target:
                return
            drain = self.node.enter_drain(draining_to(target.mode), self.drain_timeout)
            drain.drained.add_done_callback(lambda _: self._wake.set())
            catching = self._catching = _CatchingUp(
                target, drain, self.clock() + self.drain_timeout
            )
        drained = catching.drain.drained.done()
        if not drained and self.clock() < catching.deadline:
            return  # the next round looks again (the drain's end wakes it)
        self._catching = None
        record = self._local_record(catching, target, fleet, out)
        if out is None and target is fleet.state:  # the fleet's state: say which switch led to it
            record = replace(record, fleet=await self._switch_record_to(target))
        await self.node.settle(target, record)
        self._since = self.clock()
        self._back_in = None

    async def _switch_record_to(self, state: State) -> dict[str, Any]:
        """The fleet record of the newest switch that ended in ``state`` (the one a catch-up
        follows, once the engine is back or on joining), as a dict; empty when the log cannot
        be read or no longer holds it. Catch-ups are rare: one read of the newest records."""
        kept = await self._newest_record(
            lambda r: r.to_state is state and r.outcome in _SWITCH_ENDS, (_RECORDS_LOOKED_BACK,)
        )
        return kept.to_dict() if kept is not None else {}

    async def _newest_record(
        self, matches: Callable[[FleetRecord], bool], limits: tuple[int, ...]
    ) -> FleetRecord | None:
        """The newest record of the engine's log that ``matches``, reading the newest
        ``limits[0]`` records, then (if none matched) the newest ``limits[1]``...; None if
        none does, or the log cannot be read (the engine is then lost)."""
        try:
            for limit in limits:
                for kept in await self.engine.records(limit):
                    if matches(kept):
                        return kept
        except FleetEngineUnavailable as exc:
            self._lose(exc.reason)
        return None

    def _local_record(
        self, catching: _CatchingUp, target: State, fleet: FleetState, out: InstanceOut | None
    ) -> TransitionRecord:
        drain = catching.drain
        drained = drain.drained.done()
        if catching.drain.source is target:
            outcome, trigger = Outcome.CANCELLED, Trigger.CANCEL
        elif out is None and self._back_in is None:  # a switch missed, or a start
            outcome, trigger = Outcome.RECOVERED, Trigger.RECOVER
        else:
            outcome = Outcome.COMPLETED if drained else Outcome.FORCED
            trigger = Trigger.DRAINED if drained else Trigger.DRAIN_TIMED_OUT
        if out is not None:
            reason = f"out of the fleet, alone in {out.mode} mode" + (
                f": {out.reason}" if out.reason else ""
            )
            actor = out.actor
        elif self._back_in is not None:
            reason, actor = f"back in the fleet (epoch {fleet.epoch})", None
        else:
            reason = f"following the fleet (epoch {fleet.epoch}, {fleet.outcome})"
            actor = self.instance
        return TransitionRecord(
            from_state=drain.source,
            to_state=target,
            trigger=trigger.value,
            target_mode=target.mode,
            outcome=outcome,
            at=utc_now(),
            duration_ms=max(0.0, (self.clock() - drain.started) * 1000),
            actor=actor,
            reason=reason,
            in_flight=drain.in_flight,
            stragglers={} if drained else self.node.outgoing(drain.state),
            closed=drain.closed,
        )

    async def _settle(
        self,
        following: _Following,
        state: State,
        fleet: FleetState | None,
        written: FleetRecord | None = None,
    ) -> TransitionRecord:
        """End the followed drain in steady ``state``; ``fleet`` is its completion, if seen
        (``written`` its record, if this instance wrote it)."""
        self._following = None
        completed = fleet is not None and fleet.epoch == following.epoch + 1
        outcome, trigger = (
            _LOCAL_OUTCOME.get(fleet.outcome, (Outcome.RECOVERED, Trigger.RECOVER))
            if completed and fleet is not None
            else (Outcome.RECOVERED, Trigger.RECOVER)
        )
        drain = following.drain
        if following.preparing is not None and not following.preparing.done():
            following.preparing.cancel()  # the switch ended before its drain began
        report = following.report
        followed = following.fleet
        assert followed.target is not None
        started = drain.started if drain is not None else (followed.started or self.clock())
        window = fleet.window if fleet is not None else None
        record = TransitionRecord(
            from_state=drain.source if drain is not None else self.node.state,
            to_state=state,
            trigger=trigger.value,
            target_mode=followed.target,
            outcome=outcome,
            at=utc_now(),
            duration_ms=max(0.0, (self.clock() - started) * 1000),
            actor=followed.actor,
            client=following.client,
            request_id=following.request_id,
            reason=followed.reason,
            in_flight=drain.in_flight if drain is not None else {},
            stragglers=dict(report.stragglers) if report else {},
            closed=drain.closed if drain is not None else {},
            lame_duck=_lame_duck_seconds(followed),
            window=window.fields() if window is not None else {},
            fleet=await self._fleet_record(following, fleet, written),
        )
        try:
            stored = await self.node.settle(state, record)
        except BaseException as exc:
            for waiter in following.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            raise
        self._since = self.clock()
        for waiter in following.waiters:
            if not waiter.done():
                waiter.set_result(stored)
        self.node.after_switch(stored)
        return stored

    async def _fleet_record(
        self, following: _Following, fleet: FleetState | None, written: FleetRecord | None
    ) -> dict[str, Any]:
        """The fleet record of the switch ``following`` drained for, as a dict, for the local
        record: the one this instance wrote, or the one in the engine's log (the newest, as a
        rule: read one, and look further back only when a later switch came first).

        The local side settles whatever this read does: when the log cannot be read (or no
        longer holds it), the record is what the fleet states tell (no instances), or empty
        when this instance never saw how the switch ended.
        """
        epoch = following.epoch
        if written is not None and written.epoch == epoch:
            return written.to_dict()
        kept = await self._newest_record(
            lambda r: r.epoch == epoch and r.outcome is not FleetOutcome.RESEEDED,
            (1, _RECORDS_LOOKED_BACK),
        )
        if kept is not None:
            return kept.to_dict()
        completed = fleet is not None and fleet.epoch == epoch + 1
        if not completed or fleet is None:
            return {}
        _log.warning("fleet_record_unread", instance=self.instance, epoch=epoch)
        followed = following.fleet
        return FleetRecord(
            epoch=epoch,
            from_state=followed.mode.state,
            to_state=fleet.state,
            outcome=fleet.outcome,
            at=fleet.since,
            target=followed.target,
            started=followed.started,
            actor=fleet.actor,
            reason=fleet.reason,
            starter=followed.starter,
        ).to_dict()

    async def _report(self, fleet: FleetState, *, again: bool) -> None:
        """Report the local drain of ``fleet``'s epoch once it ended (again when ``again``)."""
        following = self._following
        if following is None or following.epoch != fleet.epoch:
            # Not in this drain: out of the fleet, so nothing to wait for here.
            if self.out is None:
                return
            report = self._out_report
            if report is None or report.epoch != fleet.epoch:
                report = self._out_report = DrainReport(
                    self.instance, fleet.epoch, ReportOutcome.OUT, self.clock()
                )
            elif not again:
                return
            await self.engine.report(report, notify=fleet.starter)
            return
        if following.report is not None and not again:
            return
        if following.report is None:
            now = self.clock()
            assert fleet.deadline is not None
            if following.drain is None:
                return  # in the lame duck, or the hooks still run: nothing drained yet
            if following.drain.drained.done():
                following.report = DrainReport(
                    self.instance, fleet.epoch, ReportOutcome.DRAINED, now
                )
            elif now >= fleet.deadline:
                following.report = DrainReport(
                    self.instance,
                    fleet.epoch,
                    ReportOutcome.TIMED_OUT,
                    now,
                    stragglers=self.node.outgoing(fleet.state),
                )
            else:
                return
            _log.info(
                "fleet_drain_reported",
                instance=self.instance,
                epoch=fleet.epoch,
                outcome=following.report.outcome,
                stragglers=following.report.stragglers,
            )
        # Reports are idempotent: repeating one now and then survives an engine that lost it.
        await self.engine.report(following.report, notify=fleet.starter)

    async def _starter_gone(self, fleet: FleetState) -> bool:
        """Whether the others must complete this switch: its starter's heartbeat expired, or
        it has let the deadline pass by two rounds (alive, but failing to complete)."""
        assert fleet.deadline is not None
        if self.clock() >= fleet.deadline + self.report_grace + 2 * self.period:
            return True
        return fleet.starter is None or not await self.engine.is_live(fleet.starter)

    async def _complete_if_due(self, fleet: FleetState, *, full: bool) -> None:
        """Complete the switch if its barrier is complete.

        Cheap first: unless ``full`` (or the deadline passed), two counts (instances named,
        reports) decide whether the names are worth reading: an instance that checks at
        every report must not read the whole fleet at every report.
        """
        now = self.clock()
        assert fleet.deadline is not None
        overdue = now - self.report_grace >= fleet.deadline
        if not full and not overdue:
            named, reported = await self.engine.counts(fleet.epoch)
            if reported < named:
                return
        live = await self.engine.live()
        self.waiting = live - await self.engine.reported(fleet.epoch)
        if self.waiting and not overdue:
            return
        reports = await self.engine.reports(fleet.epoch)
        where = barrier(fleet, live, reports, now - self.report_grace)
        if not where.complete:
            return
        steady, record = completion(fleet, where, now=now, completed_by=self.instance)
        if not await self.engine.compare_and_set(fleet.epoch, steady, record):
            self._wake.set()  # someone else completed it (or moved on): read it at once
            return
        _log.info(
            "fleet_switch_completed",
            instance=self.instance,
            epoch=fleet.epoch,
            outcome=record.outcome,
            instances=record.instances,
            expired=list(record.expired),
        )
        await self._follow(steady, record)

    # -- switching -------------------------------------------------------------------------

    async def switch(
        self,
        mode: Mode | str,
        *,
        actor: str | None = None,
        client: str | None = None,
        request_id: str | None = None,
        reason: str | None = None,
        window: Window | None = None,
    ) -> TransitionRecord:
        """Switch the whole fleet to ``mode``; return this instance's record once complete.

        ``window`` (checked by the caller: :func:`~servermode.core.window.asked_window`) is
        the maintenance window the switch brings, as the lone controller's: every change asked
        for replaces the fleet's window (None ends it). One still ahead switches nothing now:
        it is kept in the fleet state (a ``scheduled`` record) and begins by itself.

        Raises SwitchInProgress while the fleet drains (another switch won), FleetEngineUnavailable
        when the engine cannot be reached (nothing changed) or stopped answering before the
        switch completed, ModeChangeRolledBack when the deadline rolled the fleet back.
        """
        target = parse_mode(mode)
        context: dict[str, Any] = dict(
            actor=actor, client=client, request_id=request_id, reason=reason
        )
        async with self._lock:
            # Asked while the engine was lost, this is the first look since: it may be back.
            try:
                fleet = await self._load_reached()
                await self._follow(fleet)
                started: FleetState | None = None
                for _ in range(_CHANGE_ATTEMPTS):
                    if fleet.is_draining:
                        break
                    if fleet.mode is target or (window is not None and window.pending):
                        if window == fleet.window:
                            return await self._note(target, Outcome.NOOP, **context)
                        if await self._set_window(fleet, window, actor=actor, reason=reason):
                            scheduled = window is not None and window.pending
                            outcome = Outcome.SCHEDULED if scheduled else Outcome.NOOP
                            return await self._note(target, outcome, window=window, **context)
                    else:
                        started = await self._start(
                            fleet, target, window=window, actor=actor, reason=reason
                        )
                        if started is not None:
                            break
                    # Another change came first: look again.
                    fleet = await self._load_reached()
                    await self._follow(fleet)
                if started is None:
                    # Another switch is under way (or just won): follow it, refuse this one.
                    await self._note(target, Outcome.REFUSED, **context)
                    raise SwitchInProgress(self._draining_state(fleet), self._retry_after())
            except FleetEngineUnavailable as exc:
                self._lose(exc.reason)
                await self._note(target, Outcome.REFUSED, **context)
                raise
            _log.info(
                "fleet_switch_started",
                instance=self.instance,
                epoch=started.epoch,
                target=target,
                members=list(started.members),
                deadline=started.deadline,
            )
            await self._follow(started)
            following = self._following
            assert following is not None
            following.client, following.request_id = client, request_id
            waiter: asyncio.Future[TransitionRecord] = asyncio.get_running_loop().create_future()
            following.waiters.append(waiter)
            self._wake.set()
        assert started.deadline is not None
        # The barrier completes by the deadline (plus a round or two); past that the engine
        # must have gone: the answer says so, and the switch completes when it returns.
        bound = started.deadline - self.clock() + self.report_grace + 2 * self.period + 1
        try:
            async with asyncio.timeout(max(0.0, bound)):
                record = await asyncio.shield(waiter)
        except TimeoutError:
            raise FleetEngineUnavailable(
                f"the fleet switch to {target} (epoch {started.epoch}) was not confirmed by its "
                f"deadline: {self.lost or 'the barrier did not complete'}; it completes when "
                f"the engine answers again"
            ) from None
        if record.outcome is Outcome.CANCELLED:
            raise ModeChangeCancelled(
                record,
                f"the fleet switch was cancelled; the fleet stays in {record.to_state.mode} mode",
            )
        if record.outcome is Outcome.ROLLED_BACK:
            raise ModeChangeRolledBack(
                record,
                f"the fleet drain timed out after {self.drain_timeout:g}s with requests still "
                f"in flight; the fleet stays in {record.to_state.mode} mode",
            )
        return record

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
        """Put one live ``instance`` alone in ``mode`` (out of the fleet), or back in the fleet
        when ``mode`` is the fleet's; return once its heartbeat shows it there.

        The instance drains its own requests of the old kind (at most ``drain_timeout``,
        then they are cut). Raises NoSuchInstance for a name that is not live,
        SwitchInProgress while the fleet drains, FleetEngineUnavailable without the engine.
        """
        target = parse_mode(mode)
        context: dict[str, Any] = dict(
            actor=actor, client=client, request_id=request_id, reason=reason
        )
        async with self._lock:
            try:
                fleet = await self._load_reached()
                live = sorted(await self.engine.live())
                if instance not in live:
                    await self._note(target, Outcome.REFUSED, **context)
                    raise NoSuchInstance(instance, live)
                if fleet.is_draining:
                    await self._note(target, Outcome.REFUSED, **context)
                    raise SwitchInProgress(fleet.state, self._retry_after())
                before = await self.engine.heartbeat(instance)
                out = (
                    None
                    if target is fleet.mode
                    else InstanceOut(target, self.clock(), actor, reason)
                )
                await self.engine.set_out(instance, out)
            except FleetEngineUnavailable as exc:
                self._lose(exc.reason)
                await self._note(target, Outcome.REFUSED, **context)
                raise
        _log.info("fleet_instance_switch", instance=instance, mode=target, out=out is not None)
        bound = time.monotonic() + self.drain_timeout + 2 * self.period + 1
        while True:
            beat = await self.engine.heartbeat(instance)
            if beat is None:
                raise NoSuchInstance(instance, [])
            if beat.state is target.state and beat.out == (str(target) if out else None):
                break
            if time.monotonic() > bound:
                raise FleetEngineUnavailable(
                    f"instance {instance} did not show {target} mode in time; it goes on"
                )
            await asyncio.sleep(self.period / 2)
        where = "out of the fleet, alone" if out is not None else "back in the fleet"
        return await self.node.note(
            TransitionRecord(
                from_state=before.state if before is not None else beat.state,
                to_state=target.state,
                trigger=None,
                target_mode=target,
                outcome=Outcome.COMPLETED,
                at=utc_now(),
                actor=actor,
                client=client,
                request_id=request_id,
                reason=f"instance {instance} {where} in {target} mode"
                + (f": {reason}" if reason else ""),
            )
        )

    async def cancel(
        self, *, actor: str | None = None, reason: str | None = None
    ) -> TransitionRecord | None:
        """Abandon the fleet's switch under way: every instance returns to the mode it was
        leaving. Returns this instance's record of how the switch ended (cancelled, or what
        ended it first), or None when the fleet is not switching.

        Raises FleetEngineUnavailable when the engine cannot be reached.
        """
        async with self._lock:
            try:
                for _ in range(_CHANGE_ATTEMPTS):
                    fleet = await self._load_reached()
                    await self._follow(fleet)
                    following = self._following
                    if fleet.is_draining and following is not None:
                        break  # a switch under way: cancel it
                    if fleet.is_draining:  # out of the fleet: no drain of its own to wait for
                        ended = await self._cancel_from_out(fleet, actor=actor, reason=reason)
                        if ended is not None:
                            return ended
                        continue  # it ended first: look again
                    # Without a switch under way, a cancel ends the fleet's window, if any.
                    if fleet.is_draining or fleet.window is None:
                        return None
                    if await self._set_window(fleet, None, actor=actor, reason=reason):
                        return await self._note(
                            Mode.MAINTENANCE, Outcome.CANCELLED, actor=actor, reason=reason
                        )
                    # Another change came first (the window's own switch, as a rule, started
                    # at its time by another instance): look again, and cancel that.
                else:
                    return None
                waiter: asyncio.Future[TransitionRecord] = (
                    asyncio.get_running_loop().create_future()
                )
                following.waiters.append(waiter)
                steady, record = cancellation(
                    fleet, now=self.clock(), cancelled_by=self.instance, actor=actor, reason=reason
                )
                if await self.engine.compare_and_set(fleet.epoch, steady, record):
                    _log.info("fleet_switch_cancelled", instance=self.instance, epoch=fleet.epoch)
                    await self._follow(steady, record)
                else:  # it ended first (completed, or cancelled elsewhere): follow that
                    current = await self.engine.load()
                    if current is not None:
                        await self._follow(current)
            except FleetEngineUnavailable as exc:
                self._lose(exc.reason)
                raise
        if not waiter.done():  # the end is not read yet: it will be at the next round
            self._wake.set()
        return await waiter

    async def _cancel_from_out(
        self, fleet: FleetState, *, actor: str | None, reason: str | None
    ) -> TransitionRecord | None:
        """Cancel the fleet's switch from an instance out of the fleet (it follows no drain,
        but may stop the fleet's as any instance may); None if the switch ended first."""
        steady, record = cancellation(
            fleet, now=self.clock(), cancelled_by=self.instance, actor=actor, reason=reason
        )
        if not await self.engine.compare_and_set(fleet.epoch, steady, record):
            return None
        _log.info("fleet_switch_cancelled", instance=self.instance, epoch=fleet.epoch)
        await self._follow(steady, record)
        assert fleet.target is not None
        return await self._note(fleet.target, Outcome.CANCELLED, actor=actor, reason=reason)

    def _draining_state(self, fleet: FleetState | None) -> State:
        if fleet is not None and fleet.is_draining:
            return fleet.state
        return self.node.state

    def _retry_after(self) -> int:
        known = self.known
        if known is None or known.deadline is None:
            return 1
        return max(1, int(known.deadline - self.clock() + 0.999))

    async def _note(
        self, target: Mode, outcome: Outcome, *, window: Window | None = None, **context: Any
    ) -> TransitionRecord:
        """Keep and audit this instance's record of a change that moved no state: refused,
        a noop, or a window set or ended (``window``: the one in force after it)."""
        state = self.node.state
        return await self.node.note(
            TransitionRecord(
                from_state=state,
                to_state=state,
                trigger=_NOTED_TRIGGER[outcome](target),
                target_mode=target,
                outcome=outcome,
                at=utc_now(),
                window=window.fields() if window is not None else {},
                **context,
            )
        )

    async def _start(
        self,
        fleet: FleetState,
        target: Mode,
        *,
        window: Window | None,
        actor: str | None,
        reason: str | None,
    ) -> FleetState | None:
        """Start the switch of steady ``fleet`` to ``target`` here; None if another change
        came first (the compare-and-set lost)."""
        live = await self.engine.live()
        started = switch_state(
            fleet,
            target,
            now=self.clock(),
            drain_timeout=self.drain_timeout,
            policy=self.timeout_policy,
            starter=self.instance,
            members=[*live, self.instance],
            actor=actor,
            reason=reason,
            window=window,
            lame_duck=self.lame_duck,
        )
        if not await self.engine.compare_and_set(fleet.epoch, started, None):
            return None
        return started

    async def _set_window(
        self, fleet: FleetState, window: Window | None, *, actor: str | None, reason: str | None
    ) -> bool:
        """Put ``window`` in force in steady ``fleet`` (None: end it), and follow; False if
        another change came first."""
        steady, record = window_change(
            fleet, window, now=self.clock(), changed_by=self.instance, actor=actor, reason=reason
        )
        if not await self.engine.compare_and_set(fleet.epoch, steady, record):
            return False
        _log.info(
            "fleet_window_set" if window is not None else "fleet_window_ended",
            instance=self.instance,
            epoch=steady.epoch,
            start_at=window.start_at.isoformat() if window and window.start_at else None,
            until=window.until.isoformat() if window and window.until else None,
        )
        await self._follow(steady, record)
        return True

    async def _window_due(self, fleet: FleetState) -> None:
        """Make the switch the fleet's window asks for once its time has come (any instance
        may; the compare-and-set lets one do it), as actor ``schedule``."""
        moment = self._window_moment(fleet)
        if moment is None or self.clock() < moment:
            return
        event = due_event(fleet.window, datetime.fromtimestamp(self.clock(), UTC))
        if event is None:
            return
        who: dict[str, Any] = dict(actor=SCHEDULE, reason=event.reason)
        if fleet.mode is event.target:  # nothing to switch: the window's state alone changes
            if await self._set_window(fleet, event.window, **who):
                await self._note(event.target, Outcome.NOOP, window=event.window, **who)
                return
        else:
            started = await self._start(fleet, event.target, window=event.window, **who)
            if started is not None:
                _log.info(
                    "fleet_window_switch_started",
                    instance=self.instance,
                    epoch=started.epoch,
                    target=event.target,
                )
                await self._follow(started)
                self._wake.set()
                return
        self._wake.set()  # another instance did it first: read what it wrote at once

    # -- reading ---------------------------------------------------------------------------

    async def records(self, limit: int = 50) -> list[FleetRecord]:
        return await self.engine.records(limit)

    async def refresh_members(self, max_age: float = 0.0) -> list[Heartbeat]:
        """Read every live instance's heartbeat, unless read less than ``max_age`` s ago.

        O(fleet): for status pages, never for rounds. A lost engine leaves the last list.
        """
        now = self.clock()
        if now - self._members_read >= max_age:
            try:
                self.members = await self.engine.members()
                self._members_read = now
            except FleetEngineUnavailable as exc:
                self._lose(exc.reason)
        return self.members

    def view(self) -> dict[str, Any]:
        """The fleet as this instance last saw it, JSON-ready (no engine call)."""
        known = self.known
        following = self._following
        live = sorted(self.members, key=lambda beat: beat.instance)
        view: dict[str, Any] = {
            "instance": self.instance,
            "out": str(self.out.mode) if self.out is not None else None,
            "engine": "lost" if self.lost is not None else "connected",
            "epoch": known.epoch if known else None,
            "state": str(known.state) if known else None,
            "mode": str(known.mode) if known else None,
            "instances": [
                {
                    "instance": beat.instance,
                    "epoch": beat.epoch,
                    "state": str(beat.state),
                    "in_flight": beat.in_flight,
                    "since": beat.since,
                    "seen": beat.at,
                    "reported": beat.reported,
                    "out": beat.out,
                }
                for beat in live
            ],
        }
        if self.lost is not None:
            view["engine_error"] = self.lost
            view["engine_lost_since"] = self.lost_since
        if known is not None and known.is_draining:
            view.update(
                target=str(known.target),
                deadline=known.deadline,
                starter=known.starter,
                not_drained=sorted(
                    beat.instance
                    for beat in live
                    if beat.epoch < known.epoch or beat.reported is None
                ),
            )
        if following is not None and following.report is not None:
            view["reported"] = str(following.report.outcome)
        return view
