"""The controller never reports a mode that is not saved yet, nor one whose save failed."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest
from servermode.core import (
    InMemoryStore,
    ModeController,
    PersistedState,
    StoreError,
    TransitionRecord,
)

pytestmark = pytest.mark.timeout(10)


class SlowFinalSave(InMemoryStore):
    """A blocking store whose save of a steady state waits until the test lets it finish."""

    blocking = True

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = fail
        self.armed = False

    def save(
        self, state: PersistedState, record: TransitionRecord | None = None
    ) -> TransitionRecord | None:
        if self.armed and record is not None:
            self.entered.set()
            self.release.wait(5)
            if self.fail:
                raise OSError("disk gone")
        return super().save(state, record)


async def _while_final_save_runs(store: SlowFinalSave) -> tuple[ModeController, list[str]]:
    controller = ModeController(store, drain_timeout=5)
    await controller.start()
    store.armed = True
    switch = asyncio.create_task(controller.set_mode("maintenance"))
    await asyncio.to_thread(store.entered.wait, 5)
    seen = [controller.state.value, controller.status().mode.value, controller.mode.value]
    store.release.set()
    with contextlib.suppress(StoreError):
        await switch
    return controller, seen


def test_state_stays_draining_while_the_final_save_runs() -> None:
    """While the result of a switch is being saved, state and status still show the drain."""
    controller, seen = asyncio.run(_while_final_save_runs(SlowFinalSave()))
    assert seen == ["draining_to_maintenance", "production", "production"]
    assert controller.state.value == "maintenance"


def test_a_failed_final_save_never_shows_the_new_mode() -> None:
    """When the final save fails, the new mode was never reported and the old one is back."""
    controller, seen = asyncio.run(_while_final_save_runs(SlowFinalSave(fail=True)))
    assert "maintenance" not in seen
    assert controller.state.value == "production"
    assert controller.status().mode.value == "production"
