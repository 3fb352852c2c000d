"""The mode controller: runs mode changes (drain, switch, persist, audit), one at a time.

Every step of a switch is planned first (the transition table's :func:`step` says where a
trigger leads), saved second, and applied last: the machine and the gate move together, and
only once the state they move to is saved. Whatever ends a switch (drained, timed out,
cancelled, a store that fails, the switch's own task cancelled), the machine, the gate and
the drain end up agreeing, and the next switch can begin.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from .audit import AuditLog
from .dryrun import DryRun, plan_dry_run
from .errors import (
    ModeChangeCancelled,
    ModeChangeFailed,
    ModeChangeInterrupted,
    ModeChangeRolledBack,
    StoreError,
    SwitchInProgress,
)
from .gate import Gate, Ticket
from .hooks import AfterSwitch, BeforeDrain, Hooks, Subscriber
from .logs import get_logger
from .machine import DrainRoute, ModeMachine, TimeoutPolicy, Transition, Trigger, drain_to, step
from .modes import Mode, State, parse_mode
from .policy import CONTEXT_SERVICES, AdmissionPolicy
from .rates import RateMeter
from .records import Outcome, PersistedState, TransitionRecord, utc_now
from .store import InMemoryStore, Store
from .window import ACTOR as SCHEDULE
from .window import Window, WindowTimer, asked_window, due_event

__all__ = ["MAX_DRAIN_TIMEOUT", "ModeController", "ModeStatus"]

T = TypeVar("T")

#: The longest drain a controller accepts, in seconds: one week. Longer (or infinite, or NaN)
#: is a mistake, not a wish; bound it where settings are read, with this same constant.
MAX_DRAIN_TIMEOUT: Final = 7 * 24 * 3600.0

#: Called with the draining state when a drain begins (the gate already refuses what that
#: state refuses); returns the long-lived connections it closed, per category, or None.
DrainListener = Callable[[State], Mapping[str, int] | None]

_log = get_logger("servermode")


def notify_drain_listeners(listeners: Iterable[DrainListener], state: State) -> dict[str, int]:
    """Tell each listener that a drain into ``state`` began; what they closed, per category.

    A listener that raises is logged and skipped: the drain goes on without it.
    """
    closed: dict[str, int] = {}
    for listener in listeners:
        try:
            counts = listener(state) or {}
        except Exception:
            _log.exception("drain_listener_failed", listener=repr(listener))
            continue
        for category, n in counts.items():
            if n:
                closed[category] = closed.get(category, 0) + n
    return closed


#: Seconds before a window's switch that failed (a store down, a drain rolled back) is retried.
WINDOW_RETRY = 5.0


@dataclass(frozen=True, slots=True)
class ModeStatus:
    """A snapshot of the controller for status pages; drain fields are None when steady."""

    mode: Mode
    state: State
    since: datetime
    in_flight: dict[str, int]
    drain_timeout: float
    timeout_policy: TimeoutPolicy
    target: Mode | None = None
    drain_started: datetime | None = None
    deadline: datetime | None = None
    reason: str | None = None  # given for the mode in force, or for the switch under way
    lame_duck: float = 0.0  # seconds readiness fails before a drain to maintenance begins
    lame_duck_until: datetime | None = None  # while in it: readiness fails, requests admitted
    window: Window | None = None  # the maintenance window, begun or ahead


@dataclass(frozen=True, slots=True)
class _Context:
    """Who asked for a change, for the audit."""

    actor: str | None = None
    client: str | None = None
    request_id: str | None = None
    reason: str | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "client": self.client,
            "request_id": self.request_id,
            "reason": self.reason,
        }


@dataclass(slots=True)
class _Drain:
    """One mode change under way, from the moment it is accepted until it is settled."""

    route: DrainRoute
    start: Transition  # the row that begins it, from the steady state being left
    context: _Context
    started: float
    started_at: datetime
    deadline: float
    deadline_at: datetime
    ended: asyncio.Future[None]  # resolved by the first of: drained, cancelled, timed out
    result: asyncio.Future[TransitionRecord]  # what every caller waiting for it is told
    in_flight: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    begun: bool = False  # the machine and the gate are in the draining state
    drained: bool = False
    cancelled: _Context | None = None  # who asked to cancel, once someone has
    lame_duck: float = 0.0  # seconds of lame duck before the drain begins (0: none)
    lame_duck_until: datetime | None = None  # set while the lame duck lasts
    window: Window | None = None  # the window the change asked for (begun), if any
    window_after: Window | None = None  # the window in force once it ends
    committed: TransitionRecord | None = None  # the saved end, once it is in force

    @property
    def source(self) -> State:
        return self.route.leaves

    @property
    def target(self) -> Mode:
        return self.route.leads_to.mode

    def retry_after(self) -> int:
        return max(1, math.ceil(self.deadline - time.monotonic()))


class ModeController:
    """Owns the machine, the gate, the store and the audit log.

    Parameters:
        store: where the state and the history are kept (default: in memory).
        policy: which categories each state admits (default: the Context Services preset).
        initial_mode: the mode when the store holds nothing yet.
        drain_timeout: seconds a drain waits for the requests of the outgoing kind admitted
            before it; from 0 to :data:`MAX_DRAIN_TIMEOUT` (a week), else ValueError.
        timeout_policy: what a drain that times out does (``force`` or ``rollback``).
        refusal_retry_after: retry hint (seconds) for requests a steady mode refuses.
        audit: the audit log (default: structlog logger ``servermode.audit``).
        lame_duck: seconds a switch to maintenance keeps admitting requests while readiness
            already fails (:attr:`lame_duck_until`), so that load balancers stop sending
            first; then the drain begins as usual. 0 (the default): none.
        hooks: subscribers and before-drain / after-switch hooks (:mod:`.hooks`); or use
            :meth:`subscribe`, :meth:`before_drain` and :meth:`after_switch`.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        policy: AdmissionPolicy = CONTEXT_SERVICES,
        initial_mode: Mode | str = Mode.PRODUCTION,
        drain_timeout: float = 60.0,
        timeout_policy: TimeoutPolicy | str = TimeoutPolicy.FORCE,
        refusal_retry_after: int = 60,
        audit: AuditLog | None = None,
        lame_duck: float = 0.0,
        hooks: Hooks | None = None,
    ) -> None:
        timeout = float(drain_timeout)
        if not 0 <= float(lame_duck) <= MAX_DRAIN_TIMEOUT:
            raise ValueError(
                f"lame_duck must be from 0 to {MAX_DRAIN_TIMEOUT:g} seconds, not {lame_duck!r}"
            )
        self.lame_duck = float(lame_duck)
        if not 0 <= timeout <= MAX_DRAIN_TIMEOUT:  # NaN fails every comparison: refused too
            raise ValueError(
                f"drain_timeout must be from 0 to {MAX_DRAIN_TIMEOUT:g} seconds (a week), "
                f"not {drain_timeout!r}"
            )
        self.store: Store = store if store is not None else InMemoryStore()
        self.policy = policy
        self.initial_mode = parse_mode(initial_mode)
        self.drain_timeout = timeout
        self._machine = ModeMachine(self.initial_mode.state, TimeoutPolicy(timeout_policy))
        self.gate = Gate(policy, self.initial_mode.state, refusal_retry_after=refusal_retry_after)
        self._audit = audit if audit is not None else AuditLog()
        self._since = utc_now()
        self._reason: str | None = None  # given for the mode in force
        self._drain: _Drain | None = None
        self._started = False
        self._drain_listeners: list[DrainListener] = []
        self.hooks = hooks if hooks is not None else Hooks()
        #: Recent request rates per category (dry runs tell them), sampled while started.
        self.rates = RateMeter(self.gate.arrivals)
        self._window: Window | None = None
        self._window_timer = WindowTimer(self._window_due, utc_now)
        self._window_tasks: set[asyncio.Task[None]] = set()
        # Saves of the state that no drain makes (a window set or ended) and a drain's intent
        # are written one at a time, each with the window in force.
        self._state_writes = asyncio.Lock()

    def add_drain_listener(self, listener: DrainListener) -> None:
        """Call ``listener(state)`` whenever a drain begins, once the gate refuses new requests.

        For what a drain cannot wait out: the HTTP adapter closes the open WebSockets whose
        category the target refuses. What it returns (connections closed per category) is the
        transition record's ``closed``. A listener that raises is logged and ignored.
        """
        self._drain_listeners.append(listener)

    def subscribe(self, subscriber: Subscriber, *, timeout: float | None = None) -> None:
        """Call ``subscriber(record)`` (plain or async) with every transition record, in the
        background, bounded by ``timeout`` (:mod:`.hooks`); the switch never waits for it."""
        self.hooks.subscribe(subscriber, timeout=timeout)

    def before_drain(self, hook: BeforeDrain) -> None:
        """Await ``hook(target_mode)`` (bounded) before each drain begins."""
        self.hooks.before_drain(hook)

    def after_switch(self, hook: AfterSwitch) -> None:
        """Await ``hook(record)`` (bounded) once each switch has ended, before its answer."""
        self.hooks.after_switch(hook)

    # -- reading ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The state in force: the gate's (the machine moves with it, once a state is saved)."""
        return self.gate.state

    @property
    def mode(self) -> Mode:
        return self.state.mode

    @property
    def timeout_policy(self) -> TimeoutPolicy:
        return self._machine.timeout_policy

    def admit(self, category: str) -> Ticket:
        """Admit one request of ``category`` (see :meth:`Gate.admit`)."""
        return self.gate.admit(category)

    def retry_after(self) -> int:
        return self.gate.retry_after()

    def status(self) -> ModeStatus:
        state = self.state
        # A change accepted but not begun yet (its intent being saved), or being undone, is
        # not a drain in force: the state is still steady, and status says so.
        drain = self._drain if state.is_draining else None
        return ModeStatus(
            mode=state.mode,
            state=state,
            since=self._since,
            in_flight=self.gate.in_flight(),
            drain_timeout=self.drain_timeout,
            timeout_policy=self.timeout_policy,
            target=drain.target if drain else None,
            drain_started=drain.started_at if drain else None,
            deadline=drain.deadline_at if drain else None,
            reason=self.reason,
            lame_duck=self.lame_duck,
            lame_duck_until=self.lame_duck_until,
            window=self.window,
        )

    @property
    def window(self) -> Window | None:
        """The maintenance window, begun or ahead, or None."""
        return self._window

    @property
    def lame_duck_until(self) -> datetime | None:
        """While a switch to maintenance is in its lame duck: when the drain will begin."""
        drain = self._drain
        return drain.lame_duck_until if drain is not None else None

    @property
    def reason(self) -> str | None:
        """The reason given for the mode in force, or for the switch under way."""
        drain = self._drain
        if drain is not None and drain.begun:
            return drain.context.reason
        return self._reason

    def dry_run(self, mode: Mode | str) -> DryRun:
        """What a switch to ``mode`` would do now (:mod:`.dryrun`); nothing changes."""
        target = parse_mode(mode)
        state, switching, in_flight = self._dry_run_facts()
        return plan_dry_run(
            state=state,
            target=target,
            switching=switching,
            policy=self.policy,
            in_flight=in_flight,
            rates=self.rates.rates(),
            drain_timeout=self.drain_timeout,
            timeout_policy=self.timeout_policy,
            lame_duck=self._lame_duck_to(target),
        )

    def _dry_run_facts(self) -> tuple[State, bool, dict[str, int]]:
        """What a dry run plans from: the state, whether a switch is under way, the counted
        requests in flight per category."""
        return self.state, self._drain is not None, self.gate.in_flight()

    def _lame_duck_to(self, target: Mode) -> float:
        return self.lame_duck if target is Mode.MAINTENANCE else 0.0

    async def history(self, limit: int = 50, before: int | None = None) -> list[TransitionRecord]:
        return await self._io(self.store.history, limit, before)

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> TransitionRecord | None:
        """Load the persisted state; record the initial mode, or recover an interrupted drain.

        Returns the record written at start (initialized or recovered), or None.
        """
        if self._started:
            return None
        persisted = await self._io(self.store.load)
        now = utc_now()
        record: TransitionRecord | None = None
        if persisted is None:
            state = self.initial_mode.state
            record = self._record(state, state, None, self.initial_mode, Outcome.INITIALIZED, now)
        elif persisted.state.is_draining:
            # No request survived the crash, so there is nothing left to drain: complete it,
            # in the name of whoever asked for it.
            recover = self._step(persisted.state, Trigger.RECOVER)
            state = recover.dest
            asked = _Context(
                persisted.actor, persisted.client, persisted.request_id, persisted.reason
            )
            record = self._record(
                persisted.state,
                state,
                recover.trigger,
                state.mode,
                _outcome(recover),
                now,
                **asked.fields(),
            )
        else:
            state = persisted.state
            now = persisted.since
        if persisted is not None:  # a recovered drain's reason is its target's
            self._reason = persisted.reason
            self._window = persisted.window
        if record is not None:
            saving = PersistedState(state, since=now, reason=self._reason, window=self._window)
            record = await self._save(saving, record)
            self._emit(record)
        self._machine.restore(state)
        self.gate.set_state(state)
        self._since = now
        self._started = True
        self.rates.start()
        if self._window is not None and self._window_is_due():
            # A window that began or ended while the service was down: act on it before
            # serving (a restart after its end comes up in production).
            await self._window_event()
        self._arm_window()
        return record

    async def close(self) -> None:
        """Let a change under way finish (bounded by the drain timeout); close the store."""
        self._window_timer.cancel()
        for task in list(self._window_tasks):
            if not task.done() and (self._drain is None or self._drain.task is not task):
                task.cancel()
        drain = self._drain
        if drain is not None and drain.task is not None:
            await asyncio.wait([drain.task])
        if self._window_tasks:
            await asyncio.wait(list(self._window_tasks))
        self.rates.stop()
        await self.hooks.close()
        await self._io(self.store.close)
        self._started = False

    # -- changing mode ---------------------------------------------------------------------

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
        """Switch to ``mode`` and return the record once the switch is complete.

        ``until`` (maintenance only) returns to production by itself then, as actor
        ``schedule``; ``start_at`` (maintenance only) does not switch now but schedules the
        window to begin then (the record is ``scheduled``). Either is kept with the state and
        survives a restart. Every change asked for (this one, without a window, included)
        replaces the window in force; :meth:`cancel` ends it.

        Raises InvalidMode for a bad name, InvalidWindow for a window in the past, ending
        before it begins or too far ahead, SwitchInProgress while another change is under
        way, ModeChangeRolledBack / ModeChangeCancelled / ModeChangeInterrupted when the old
        mode stays in force, and StoreError when the change could not be saved (the old mode
        stays in force). Cancelling the caller does not stop the change: it completes or
        times out anyway.
        """
        target = parse_mode(mode)
        window = asked_window(target, start_at, until, reason, utc_now())
        if not self._started:
            raise RuntimeError("ModeController.start() must be awaited before set_mode()")
        context = _Context(actor, client, request_id, reason)
        current = self.state
        under_way = self._drain
        if under_way is not None:
            retry = under_way.retry_after()
            start = drain_to(target).start
            refused = self._record(current, current, start, target, Outcome.REFUSED)
            await self._append(refused, context)
            raise SwitchInProgress(under_way.route.state, retry)
        if window is not None and window.pending:
            scheduled = self._record(current, current, None, target, Outcome.SCHEDULED)
            return await self._keep_window(scheduled, context, window)
        if current.mode is target:
            noop = self._record(current, current, None, target, Outcome.NOOP)
            return await self._keep_window(noop, context, window)
        # Everything up to create_task runs without yielding, so no second change can slip
        # in; and everything that can fail is computed before the change is registered.
        drain = self._plan(current, target, context)
        drain.window = window
        self._drain = drain
        drain.task = asyncio.get_running_loop().create_task(
            self._switch(drain), name=f"servermode switch to {target}"
        )
        return await asyncio.shield(drain.result)

    async def cancel(
        self, *, actor: str | None = None, reason: str | None = None
    ) -> TransitionRecord | None:
        """Abandon the drain under way and return to the mode it was leaving.

        Returns the record of the change (cancelled, or whatever ended it first), or None
        when no change is under way. It also ends the maintenance window: without a change
        under way, a window in force or ahead is ended (a ``cancelled`` record, no switch).
        """
        drain = self._drain
        if drain is None:
            if self._window is None:
                return None
            current = self.state
            ended = self._record(
                current, current, Trigger.CANCEL, Mode.MAINTENANCE, Outcome.CANCELLED
            )
            return await self._keep_window(ended, _Context(actor=actor, reason=reason), None)
        if drain.cancelled is None:
            drain.cancelled = _Context(actor=actor, reason=reason)
            _end(drain.ended)
        try:
            return await asyncio.shield(drain.result)
        except ModeChangeFailed as failed:
            return failed.record

    def _plan(self, current: State, target: Mode, context: _Context) -> _Drain:
        """The change to ``target``, computed whole; nothing moves."""
        route = drain_to(target)
        start = self._step(current, route.start)
        loop = asyncio.get_running_loop()
        started, started_at = time.monotonic(), utc_now()
        lame_duck = self._lame_duck_to(target)
        wait = lame_duck + self.drain_timeout  # the drain's deadline counts from the request
        result: asyncio.Future[TransitionRecord] = loop.create_future()
        # Told to whoever waits; if nobody does any more, a failure is not "never retrieved".
        result.add_done_callback(_retrieved)
        return _Drain(
            route=route,
            start=start,
            context=context,
            started=started,
            started_at=started_at,
            deadline=started + wait,
            deadline_at=started_at + timedelta(seconds=wait),
            ended=loop.create_future(),
            result=result,
            lame_duck=lame_duck,
        )

    async def _switch(self, drain: _Drain) -> None:
        """Run ``drain`` to its end and tell its callers; on any other exit, put it back."""
        try:
            record = await self._run(drain)
        except GeneratorExit:  # the coroutine is being closed unfinished: it may not await
            raise
        except BaseException as exc:
            if drain.committed is not None:  # the end was saved and is in force
                self._settle(drain, drain.committed)
            else:
                await self._abandon(drain, exc)
            if isinstance(exc, Exception):
                return  # told to the callers through drain.result
            raise  # a cancellation (or an interpreter exit) goes on
        self._settle(drain, record)

    async def _run(self, drain: _Drain) -> TransitionRecord:
        route = drain.route
        if drain.lame_duck:
            await self._lame_duck(drain)
            if drain.cancelled is not None:
                return await self._cancelled_in_lame_duck(drain)
        await self.hooks.run_before_drain(drain.target)
        async with self._state_writes:
            intent = PersistedState(
                route.state,
                drain.started_at,
                drain.started_at,
                drain.deadline_at,
                window=self._window,
                **drain.context.fields(),
            )
            await self._save_to_the_end(intent)
        self._begin(drain)
        trigger = await self._wait(drain)
        end = self._step(route.state, trigger)
        context = drain.context
        if trigger is Trigger.CANCEL:
            asked = drain.cancelled
            assert asked is not None
            context = _Context(
                asked.actor or context.actor, context.client, context.request_id, asked.reason
            )
        stragglers = self.gate.outgoing_in_flight() if trigger is not Trigger.DRAINED else {}
        record = self._record(
            drain.source,
            end.dest,
            trigger,
            drain.target,
            _outcome(end),
            duration_ms=(time.monotonic() - drain.started) * 1000,
            in_flight=drain.in_flight,
            stragglers=stragglers,
            closed=drain.closed,
            lame_duck=drain.lame_duck,
            **context.fields(),
        )
        now = utc_now()
        switched = end.dest is route.leads_to
        reason = drain.context.reason if switched else self._reason
        # A change that took place brings its own window (or none); a cancel ends the window;
        # a change rolled back leaves the window as it was.
        if trigger is Trigger.CANCEL:
            drain.window_after = None
        else:
            drain.window_after = drain.window if switched else self._window
        if drain.window_after is not None:
            record = replace(record, window=drain.window_after.fields())
        saved = await self._save_to_the_end(
            PersistedState(end.dest, since=now, reason=reason, window=drain.window_after),
            record,
            then=lambda stored: self._commit(drain, end, stored, now),
        )
        assert saved is not None
        await self.hooks.run_after_switch(saved)
        return saved

    async def _keep_window(
        self, record: TransitionRecord, context: _Context, window: Window | None
    ) -> TransitionRecord:
        """Record a change that moves no state; save ``window`` with the state if it differs."""
        if window == self._window:
            return await self._append(record, context)
        record = replace(record, **context.fields())
        if window is not None:
            record = replace(record, window=window.fields())
        async with self._state_writes:
            state = PersistedState(
                self.state, since=self._since, reason=self._reason, window=window
            )
            try:
                record = await self._save(state, record)
            finally:
                self._emit(record)
            self._window = window
        self._arm_window()
        return record

    # -- the window's own switches ---------------------------------------------------------

    def _arm_window(self) -> None:
        """Wake at the window's next time; refusals in it count down to its end."""
        window = self._window
        ends: float | None = None
        ending = window is not None and not window.pending and window.until is not None
        if ending and self.state is State.MAINTENANCE:
            assert window is not None and window.until is not None
            # On the clock of the drain deadlines the gate is given (time.monotonic).
            ends = time.monotonic() + (window.until - utc_now()).total_seconds()
        self.gate.retry_steady_until(ends)
        if self._started:
            self._window_timer.arm(window.next_event() if window is not None else None)

    def _window_is_due(self) -> bool:
        window = self._window
        moment = window.next_event() if window is not None else None
        return moment is not None and moment <= utc_now()

    def _window_due(self) -> None:
        task = asyncio.get_running_loop().create_task(
            self._window_event(), name="servermode maintenance window"
        )
        self._window_tasks.add(task)
        task.add_done_callback(self._window_tasks.discard)

    async def _window_event(self) -> None:
        """The window begins (switch to maintenance) or ends (back to production), as
        ``schedule``; if that cannot be now, try again shortly."""
        window = self._window
        if window is None or not self._started:
            return
        now = utc_now()
        event = due_event(window, now)
        if event is None:
            self._arm_window()
            return
        target = event.target
        until = event.window.until if event.window is not None else None
        try:
            await self.set_mode(target, actor=SCHEDULE, reason=event.reason, until=until)
        except SwitchInProgress as busy:
            self._window_timer.arm(now, at_least=busy.retry_after)
        except (ModeChangeFailed, StoreError) as exc:
            _log.warning("maintenance_window_switch_failed", target=target.value, error=str(exc))
            if self._window is not None:
                self._window_timer.arm(now, at_least=WINDOW_RETRY)

    async def _lame_duck(self, drain: _Drain) -> None:
        """Readiness fails (:attr:`lame_duck_until`) while the gate still admits, for
        ``drain.lame_duck`` seconds or until the change is cancelled."""
        drain.lame_duck_until = utc_now() + timedelta(seconds=drain.lame_duck)
        _log.info("lame_duck_begins", target=drain.target.value, seconds=drain.lame_duck)
        try:
            await asyncio.wait([drain.ended], timeout=drain.lame_duck)
        finally:
            drain.lame_duck_until = None

    async def _cancelled_in_lame_duck(self, drain: _Drain) -> TransitionRecord:
        """A change cancelled before its drain began: nothing moved, nothing to undo."""
        asked = drain.cancelled
        assert asked is not None
        context = drain.context
        record = self._record(
            drain.source,
            drain.source,
            Trigger.CANCEL,
            drain.target,
            Outcome.CANCELLED,
            duration_ms=(time.monotonic() - drain.started) * 1000,
            lame_duck=drain.lame_duck,
        )
        self._drain = None
        who = _Context(
            asked.actor or context.actor, context.client, context.request_id, asked.reason
        )
        return await self._keep_window(record, who, None)

    def _begin(self, drain: _Drain) -> None:
        """The intent is saved: the machine and the gate enter the draining state together."""
        loop = asyncio.get_running_loop()
        state = self._machine.take(drain.start)
        drain.begun = True
        drain.in_flight = self.gate.begin_drain(state, drain.deadline, _resolver(loop, drain))
        drain.closed = notify_drain_listeners(self._drain_listeners, state)

    def _commit(
        self, drain: _Drain, end: Transition, record: TransitionRecord, now: datetime
    ) -> None:
        """The end is saved: the machine and the gate leave the draining state together."""
        self._machine.take(end)
        self.gate.set_state(end.dest)
        self._since = now
        if end.dest is drain.route.leads_to:
            self._reason = drain.context.reason
        self._window = drain.window_after
        drain.committed = record
        self._drain = None
        self._emit(record)
        self._arm_window()

    async def _abandon(self, drain: _Drain, error: BaseException) -> None:
        """Put the mode being left back in force after a switch that could not end, record
        the attempt as failed, and tell the callers.

        Memory first, at once (the table's ``cancel`` leads the machine back, the gate
        follows); then the old state is written over the saved intent, if the store lets us,
        so that a restart does not complete a change that never was.
        """
        stragglers: dict[str, int] = {}
        if drain.begun:
            stragglers = self.gate.outgoing_in_flight()
            back = self._step(drain.route.state, Trigger.CANCEL)
            self._machine.take(back)
            self.gate.set_state(back.dest)
        record = self._record(
            drain.source,
            drain.source,
            None,
            drain.target,
            Outcome.FAILED,
            duration_ms=(time.monotonic() - drain.started) * 1000,
            in_flight=drain.in_flight,
            stragglers=stragglers,
            closed=drain.closed,
            **drain.context.fields(),
        )
        try:
            with contextlib.suppress(StoreError):
                saved = await self._save_to_the_end(
                    PersistedState(
                        drain.source, since=self._since, reason=self._reason, window=self._window
                    ),
                    record,
                )
                record = saved if saved is not None else record
        finally:
            self._drain = None
            self._emit(record)
            if not isinstance(error, Exception):
                error = ModeChangeInterrupted(
                    record,
                    f"the mode change was interrupted before it was saved; the server stays "
                    f"in {drain.source.mode} mode",
                )
            if not drain.result.done():
                drain.result.set_exception(error)

    def _settle(self, drain: _Drain, record: TransitionRecord) -> None:
        """Tell the callers how ``drain`` ended."""
        error: ModeChangeFailed | None = None
        if record.outcome is Outcome.ROLLED_BACK:
            error = ModeChangeRolledBack(
                record,
                f"drain timed out after {self.drain_timeout:g}s with requests still in flight; "
                f"the server stays in {drain.source.mode} mode",
            )
        elif record.outcome is Outcome.CANCELLED:
            error = ModeChangeCancelled(
                record, f"mode change cancelled; the server stays in {drain.source.mode} mode"
            )
        if drain.result.done():
            return
        if error is not None:
            drain.result.set_exception(error)
        else:
            drain.result.set_result(record)

    async def _wait(self, drain: _Drain) -> Trigger:
        # One future that every way out resolves, awaited directly: the switch resumes one
        # event-loop hop after the last release (asyncio.wait would add a second hop, and on a
        # busy loop each hop waits behind everything queued before it).
        remaining = max(0.0, drain.deadline - time.monotonic())
        timer = asyncio.get_running_loop().call_later(remaining, _end, drain.ended)
        try:
            await drain.ended
        finally:
            timer.cancel()
        if drain.cancelled is not None:
            return Trigger.CANCEL
        if drain.drained:
            return Trigger.DRAINED
        return Trigger.DRAIN_TIMED_OUT

    def _step(self, source: State, trigger: Trigger) -> Transition:
        """The row of the table ``trigger`` follows from ``source``; the table must have it."""
        row = step(source, trigger, self.timeout_policy)
        if row is None:
            raise RuntimeError(f"the transition table has no {trigger} from {source}")
        return row

    # -- records and I/O -------------------------------------------------------------------

    def _emit(self, record: TransitionRecord) -> None:
        """Tell the audit log and the subscribers (who run in the background)."""
        self._audit.emit(record)
        self.hooks.publish(record)

    def _record(
        self,
        from_state: State,
        to_state: State,
        trigger: Trigger | None,
        target: Mode,
        outcome: Outcome,
        at: datetime | None = None,
        **fields: Any,
    ) -> TransitionRecord:
        return TransitionRecord(
            from_state=from_state,
            to_state=to_state,
            trigger=trigger.value if trigger is not None else None,
            target_mode=target,
            outcome=outcome,
            at=at or utc_now(),
            **fields,
        )

    async def _append(self, record: TransitionRecord, context: _Context) -> TransitionRecord:
        record = replace(record, **context.fields())
        try:
            record = await self._io(self.store.append, record)
        finally:
            self._emit(record)
        return record

    async def _save(
        self, state: PersistedState, record: TransitionRecord | None = None
    ) -> TransitionRecord:
        saved = await self._io(self.store.save, state, record)
        return saved if saved is not None else record  # type: ignore[return-value]

    async def _save_to_the_end(
        self,
        state: PersistedState,
        record: TransitionRecord | None = None,
        then: Callable[[TransitionRecord], None] | None = None,
    ) -> TransitionRecord | None:
        """Save, even if the switch's task is cancelled meanwhile; apply ``then`` once saved.

        A blocking store's call runs on in its thread whatever happens to the task awaiting
        it: giving up the wait would leave unknown what is on disk, and the next write could
        land before it. So a cancellation waits for the save to end; what was saved is
        applied (``then``, with the stored record); then the cancellation goes on.
        """
        saving = self._call(self.store.save, state, record)
        interrupted: BaseException | None = None
        while not saving.done():
            try:
                await asyncio.wait([saving])
            except asyncio.CancelledError as exc:
                interrupted = exc
        if saving.exception() is None and then is not None and record is not None:
            stored = saving.result()
            then(stored if stored is not None else record)
        if interrupted is not None:
            raise interrupted
        with self._store_errors():
            stored = saving.result()
        return stored if stored is not None else record

    async def _io(self, call: Callable[..., T], *args: Any) -> T:
        """Call the store, off the event loop when it may block; its failures are StoreErrors."""
        with self._store_errors():
            return await self._call(call, *args)

    def _call(self, call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Start a store call: in a worker thread when the store may block, else at once."""
        loop = asyncio.get_running_loop()
        if self.store.blocking:
            context = contextvars.copy_context()
            return loop.run_in_executor(None, functools.partial(context.run, call, *args))
        done: asyncio.Future[T] = loop.create_future()
        try:
            done.set_result(call(*args))
        except Exception as exc:
            done.set_exception(exc)
        return done

    @contextlib.contextmanager
    def _store_errors(self) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store {type(self.store).__name__} failed: {exc}") from exc


def _outcome(row: Transition) -> Outcome:
    assert row.outcome is not None, f"{row.trigger} from {row.source} ends no drain"
    return row.outcome


def _end(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _resolver(loop: asyncio.AbstractEventLoop, drain: _Drain) -> Callable[[], None]:
    """A callback, safe from any thread: marks ``drain`` drained and ends its wait, on ``loop``."""
    loop_thread = threading.get_ident()

    def resolve() -> None:
        drain.drained = True
        _end(drain.ended)

    def drained() -> None:
        if threading.get_ident() == loop_thread:
            resolve()
        else:
            loop.call_soon_threadsafe(resolve)

    return drained
