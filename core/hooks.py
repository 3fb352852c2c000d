"""Hooks for library users: subscribers of every transition record, and the application's own
work before a drain and after a switch.

- **Subscribers** (:meth:`Hooks.subscribe`) are told every record the audit log is, in the
  background: an async callable runs as a task, a plain one in a thread of its own (so a
  slow one holds up neither the event loop nor the store's worker threads). Each is
  bounded by its timeout; one that fails or runs over is logged, and the switch never waits
  for it. Plain callables run on daemon threads, so that one that never returns cannot hold
  up the process's exit either. At close, deliveries still running get a short grace, then
  are cancelled (logged).
- **Before-drain hooks** (:meth:`Hooks.before_drain`) are awaited when a switch is about to
  drain (after a lame duck, before the gate refuses anything), with the mode it drains to:
  stop consumers, pause schedulers. **After-switch hooks** (:meth:`Hooks.after_switch`) are
  awaited with the record once a switch has ended (whatever its outcome): flush caches,
  restart consumers. Both are bounded by ``hook_timeout``; a hook that fails or runs over is
  logged and the switch goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from .modes import Mode
from .records import TransitionRecord

__all__ = ["AfterSwitch", "BeforeDrain", "Hooks", "Subscriber"]

T = TypeVar("T")

#: Called with every transition record; plain or async.
Subscriber = Callable[[TransitionRecord], Any]
#: Awaited (bounded) before a drain begins, with the mode it drains to.
BeforeDrain = Callable[[Mode], Awaitable[None] | None]
#: Awaited (bounded) once a switch has ended, with its record.
AfterSwitch = Callable[[TransitionRecord], Awaitable[None] | None]

_log = structlog.get_logger("servermode.hooks")


class Hooks:
    """The subscribers and hooks of one controller."""

    def __init__(
        self,
        *,
        subscriber_timeout: float = 10.0,
        hook_timeout: float = 10.0,
        close_grace: float = 2.0,
    ) -> None:
        for name, value in (
            ("subscriber_timeout", subscriber_timeout),
            ("hook_timeout", hook_timeout),
        ):
            if not 0 < value <= 3600:
                raise ValueError(f"{name} must be more than 0 and at most 3600 s, not {value!r}")
        self.subscriber_timeout = subscriber_timeout
        self.hook_timeout = hook_timeout
        self.close_grace = close_grace
        self._subscribers: list[tuple[Subscriber, float]] = []
        self._before: list[BeforeDrain] = []
        self._after: list[AfterSwitch] = []
        self._deliveries: set[asyncio.Task[None]] = set()

    # -- registering -----------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber, *, timeout: float | None = None) -> None:
        """Call ``subscriber(record)`` with every transition record, in the background."""
        self._subscribers.append((subscriber, timeout or self.subscriber_timeout))

    def before_drain(self, hook: BeforeDrain) -> None:
        self._before.append(hook)

    def after_switch(self, hook: AfterSwitch) -> None:
        self._after.append(hook)

    # -- calling ---------------------------------------------------------------------------

    def publish(self, record: TransitionRecord) -> None:
        """Start delivering ``record`` to every subscriber; returns at once."""
        if not self._subscribers:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a record made outside one): deliver nothing, say so
            _log.warning("subscribers_skipped", reason="no running event loop", id=record.id)
            return
        for subscriber, timeout in self._subscribers:
            task = loop.create_task(self._deliver(subscriber, record, timeout))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    @property
    def has_before_drain(self) -> bool:
        return bool(self._before)

    @property
    def has_after_switch(self) -> bool:
        return bool(self._after)

    async def run_before_drain(self, target: Mode) -> None:
        for hook in self._before:
            await self._bounded("before_drain", hook, target)

    async def run_after_switch(self, record: TransitionRecord) -> None:
        for hook in self._after:
            await self._bounded("after_switch", hook, record)

    async def close(self) -> None:
        """Give deliveries still running a short grace, then cancel them."""
        pending = [task for task in self._deliveries if not task.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.close_grace)
            for task in late:
                task.cancel()
            if late:
                _log.warning("subscribers_cancelled_at_close", count=len(late))
                await asyncio.wait(late)

    # -- internals -------------------------------------------------------------------------

    async def _deliver(
        self, subscriber: Subscriber, record: TransitionRecord, timeout: float
    ) -> None:
        try:
            await asyncio.wait_for(self._call(subscriber, record), timeout)
        except TimeoutError:
            _log.warning("subscriber_timed_out", subscriber=_name(subscriber), seconds=timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("subscriber_failed", subscriber=_name(subscriber))

    async def _bounded(self, kind: str, hook: Callable[[T], Any], argument: T) -> None:
        try:
            await asyncio.wait_for(self._call(hook, argument), self.hook_timeout)
        except TimeoutError:
            _log.warning(f"{kind}_hook_timed_out", hook=_name(hook), seconds=self.hook_timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception(f"{kind}_hook_failed", hook=_name(hook))

    async def _call(self, function: Callable[[T], Any], argument: T) -> None:
        if _is_async(function):
            await function(argument)
            return
        result = await _on_a_daemon_thread(function, argument)
        if inspect.isawaitable(result):  # a plain callable that returned a coroutine
            await result


def _on_a_daemon_thread(function: Callable[[T], Any], argument: T) -> asyncio.Future[Any]:
    """``function(argument)`` on a thread of its own that never holds up the process's exit
    (a pool's threads are joined at exit: one subscriber that never returns would hang it)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # given up on (timed out, cancelled)
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result, error = function(argument), None
        except BaseException as exc:
            result, error = None, exc
        # A closed loop (RuntimeError) means no one is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="servermode-hook", daemon=True).start()
    return future


def _is_async(function: Callable[..., Any]) -> bool:
    while isinstance(function, functools.partial):
        function = function.func
    call = getattr(function, "__call__", None)  # noqa: B004 - an object's async __call__
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)


def _name(function: Callable[..., Any]) -> str:
    with contextlib.suppress(Exception):
        return getattr(function, "__qualname__", None) or repr(function)
    return "?"
