"""The request gate: admits requests by category, counts the ones in flight, signals drains.

This is every request's hot path. Admission and release each take one lock and do O(1) work;
the only allocation is the ticket. The gate never waits: a drain registers a callback that
the release of the last request of the outgoing kind calls (from whatever thread released
it), so the waiting side decides how to wake (an asyncio future, a threading event, a test).

A drain waits for the outgoing kind only: the counted requests whose category the drain's
target refuses (:meth:`AdmissionPolicy.outgoing`). Their counters are marked while the drain
lasts, and the gate keeps their sum; requests of other kinds run on and are not waited for.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal

from .errors import Refused, UnknownCategory
from .modes import State
from .policy import AdmissionPolicy

__all__ = ["Gate", "Ticket"]

DrainedCallback = Callable[[], None]
# Tickets are built on the hot path without the Python-level __init__ call, a tenth of
# admit + release (bench/admission.py).
_new_ticket = object.__new__


class _Counter:
    __slots__ = ("admitted", "n", "outgoing", "refused")

    def __init__(self) -> None:
        self.n = 0  # in flight (counted categories only)
        self.outgoing = False  # the drain under way waits for this category
        # Totals since the gate was made, for metrics: kept beside n, under the same lock.
        self.admitted = 0
        self.refused = 0


# What admit() finds for a category in a state: its counter (admitted, counted), False
# (admitted, uncounted) or None (refused). Unknown categories are missing.
Admission = dict[str, _Counter | Literal[False] | None]


class Ticket:
    """Proof of admission. Release it exactly once; releasing again does nothing.

    Usable as ``with gate.admit(c):`` and ``async with gate.admit(c):``.
    """

    __slots__ = ("_counter", "_gate", "category")

    def __init__(self, gate: Gate | None, counter: _Counter | None, category: str) -> None:
        self._gate = gate  # None once released: one field is both the link and the flag
        self._counter = counter
        self.category = category

    @property
    def released(self) -> bool:
        return self._gate is None

    def release(self) -> None:
        gate = self._gate
        if gate is None:
            return
        with gate._lock:
            if self._gate is None:
                return
            self._gate = None
            counter: _Counter = self._counter  # type: ignore[assignment]  # set while counted
            counter.n -= 1
            if not counter.outgoing:
                return
            gate._waiting -= 1
            callback = gate._on_drained
            if gate._waiting or callback is None:
                return
            gate._on_drained = None
        callback()  # outside the lock: it may take locks of its own

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class Gate:
    """Admits, counts and drains requests per category under an :class:`AdmissionPolicy`.

    ``refusal_retry_after`` is the retry hint (seconds) given when a steady mode refuses a
    category; while draining the hint is the time left until the drain's deadline.
    """

    def __init__(
        self,
        policy: AdmissionPolicy,
        state: State = State.PRODUCTION,
        *,
        refusal_retry_after: int = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.refusal_retry_after = refusal_retry_after
        self._clock = clock
        self._lock = threading.Lock()
        # One counter per category; the counted ones also count what is in flight.
        self._totals = {name: _Counter() for name in policy.categories}
        self._counters = {name: self._totals[name] for name in policy.counted_categories}
        # Uncounted categories share one pre-released ticket each: no allocation, nothing to drain.
        self._free = {name: Ticket(None, None, name) for name in policy.categories}
        # Per state, one lookup decides admission.
        self._admitting = {s: self._admission(policy.admitted(s)) for s in State}
        # Per state, the counters a drain in it waits for (none for a steady state).
        self._outgoing = {
            s: tuple(self._counters[name] for name in policy.outgoing(s)) for s in State
        }
        self._waiting = 0  # requests in flight of the outgoing kind, while a drain lasts
        self._state = state
        self._admitted = self._admitting[state]
        self._deadline: float | None = None
        self._on_drained: DrainedCallback | None = None

    @property
    def state(self) -> State:
        return self._state

    @property
    def total_in_flight(self) -> int:
        with self._lock:
            return sum(c.n for c in self._counters.values())

    def in_flight(self) -> dict[str, int]:
        """A consistent snapshot of the counted requests in flight, per category."""
        with self._lock:
            return {name: c.n for name, c in self._counters.items()}

    def outgoing_in_flight(self) -> dict[str, int]:
        """The requests the drain under way still waits for, per category (empty when steady)."""
        with self._lock:
            return {name: c.n for name, c in self._counters.items() if c.outgoing and c.n}

    def request_totals(self) -> dict[str, tuple[int, int]]:
        """(admitted, refused) requests per category since the gate was made: for metrics."""
        with self._lock:
            return {name: (c.admitted, c.refused) for name, c in self._totals.items()}

    def admit(self, category: str) -> Ticket:
        """Admit one request of ``category`` or raise :class:`Refused`.

        The check and the count happen under the same lock as every state change, so a
        request is either counted before a drain begins (and then waited for) or refused.
        """
        with self._lock:
            try:  # a subscript, not dict.get: cheaper, and only unknown categories miss
                counter = self._admitted[category]
            except KeyError:
                counter = None
            if counter:
                # Never an outgoing counter: a policy may not admit a category while draining
                # to a state that refuses it (AdmissionPolicy), so _waiting only ever falls.
                counter.n += 1
                counter.admitted += 1
            elif counter is None:
                raise self._refusal(category)
            else:
                self._totals[category].admitted += 1
        # The ticket is built outside the lock: the count is what the lock protects.
        if counter:
            ticket = _new_ticket(Ticket)
            ticket._gate = self
            ticket._counter = counter
            ticket.category = category
            return ticket
        return self._free[category]

    def _admission(self, admitted: dict[str, bool]) -> Admission:
        return {
            name: (self._counters[name] if admitted[name] else False) if name in admitted else None
            for name in self.policy.categories
        }

    def _refusal(self, category: str) -> Exception:
        """The exception for a category the state does not admit; counts it (under the lock)."""
        if category not in self.policy:
            return UnknownCategory(category)
        self._totals[category].refused += 1
        if self._deadline is not None:
            retry = max(1, math.ceil(self._deadline - self._clock()))
        else:
            retry = self.refusal_retry_after
        return Refused(self._state, category, retry)

    def set_state(self, state: State) -> None:
        """Move to a steady state (or any state without a drain); forgets a pending drain."""
        with self._lock:
            self._set(state)
            self._deadline = None
            self._on_drained = None

    def begin_drain(
        self, state: State, deadline: float, on_drained: DrainedCallback
    ) -> dict[str, int]:
        """Enter draining ``state``; call ``on_drained`` once no request of the outgoing kind
        (a category the drain's target refuses) is in flight.

        Returns the counts of every counted category at the instant the drain began. If
        nothing outgoing is in flight, ``on_drained`` is called before this returns.
        ``deadline`` is on the gate's clock and only feeds retry hints: the waiting side owns
        the timeout.
        """
        with self._lock:
            self._set(state)
            self._deadline = deadline
            snapshot = {name: c.n for name, c in self._counters.items()}
            for counter in self._outgoing[state]:
                counter.outgoing = True
                self._waiting += counter.n
            idle = self._waiting == 0
            self._on_drained = None if idle else on_drained
        if idle:
            on_drained()
        return snapshot

    def retry_after(self) -> int:
        """Seconds until the current drain's deadline (at least 1), or the steady hint."""
        with self._lock:
            deadline = self._deadline
        if deadline is None:
            return self.refusal_retry_after
        return max(1, math.ceil(deadline - self._clock()))

    def _set(self, state: State) -> None:
        # Whatever the previous state waited for, the new one waits for nothing yet.
        for counter in self._outgoing[self._state]:
            counter.outgoing = False
        self._waiting = 0
        self._state = state
        self._admitted = self._admitting[state]
