"""The status document's pieces: the time format and the memory figures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servermode.adapters.http import status as status_module
from servermode.adapters.http.stats import RequestStats
from servermode.adapters.http.status import (
    MemoryFigures,
    format_time,
    format_timestamp,
    process_memory_kb,
    status_document,
    status_json,
)
from servermode.core import ModeController
from starlette.responses import JSONResponse

PROC = """Name:\tpython
VmPeak:\t  300000 kB
VmHWM:\t   50000 kB
VmRSS:\t   40000 kB
RssAnon:\t   30000 kB
RssFile:\t   10000 kB
Threads:\t4
"""


def test_time_format_is_context_services() -> None:
    """Times are UTC with milliseconds: yyyy-MM-ddTHH:mm:ss.SSSZ."""
    moment = datetime(2024, 5, 1, 14, 3, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2024-05-01T12:03:09.123Z"
    assert format_time(datetime(2024, 1, 2, tzinfo=UTC)) == "2024-01-02T00:00:00.000Z"
    assert format_time(None) is None


def test_memory_figures_from_proc(tmp_path: Path) -> None:
    """Peak, resident, anonymous and the rest of the resident set, in KB."""
    proc = tmp_path / "status"
    proc.write_text(PROC)
    assert process_memory_kb(proc) == {
        "max_memory": 50000,
        "allocated_memory": 40000,
        "free_memory": 10000,
        "used_memory": 30000,
    }


def test_memory_without_proc_falls_back_to_rusage(tmp_path: Path) -> None:
    """Without /proc the peak resident size stands in, and nothing is free."""
    figures = process_memory_kb(tmp_path / "absent")
    assert figures["max_memory"] > 0
    assert figures["free_memory"] == 0


def test_memory_of_this_process_is_real() -> None:
    """Read from the running process, the figures are positive and consistent."""
    figures = process_memory_kb()
    assert figures["allocated_memory"] >= figures["used_memory"] > 0
    assert figures["max_memory"] >= figures["allocated_memory"]


class TestMemoryFigures:
    """The status document's memory figures are reused for MEMORY_MAX_AGE, then read again."""

    def test_reads_again_only_when_the_last_reading_is_old(self) -> None:
        """Within max_age the last reading is reused; at max_age the figures are read anew."""
        now = [100.0]
        reads: list[float] = []

        def read() -> dict[str, int]:
            reads.append(now[0])
            return {"max_memory": len(reads)}

        figures = MemoryFigures(max_age=1.0, read=read, clock=lambda: now[0])
        assert figures() == {"max_memory": 1}
        now[0] = 100.9
        assert figures() == {"max_memory": 1}
        now[0] = 101.0
        assert figures() == {"max_memory": 2}
        assert reads == [100.0, 101.0]


def test_format_time_converts_other_zones_to_utc() -> None:
    """An aware time in another zone is written in UTC, milliseconds truncated."""
    moment = datetime(2024, 5, 1, 14, 3, 9, 123999, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2024-05-01T12:03:09.123Z"


@settings(max_examples=500)
@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_format_timestamp_is_format_time_of_the_same_moment(at: float) -> None:
    """The per-request formatting of timestamps agrees with format_time to the millisecond."""
    assert format_timestamp(at) == format_time(datetime.fromtimestamp(at, UTC))
    assert format_timestamp(None) is None


@pytest.mark.parametrize("draining", [False, True])
@pytest.mark.parametrize("requests", [0, 3])
def test_status_json_is_the_json_response_of_the_document(
    draining: bool, requests: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status route's pieced-together body is JSONResponse's rendering of the document,
    byte for byte: steady and draining, before and after the first request, and again after
    the state changed (the cached pieces follow it)."""
    figures = {"max_memory": 9, "allocated_memory": 8, "free_memory": 1, "used_memory": 7}
    monkeypatch.setattr(status_module, "_memory", lambda: figures)

    async def check() -> None:
        controller = ModeController(drain_timeout=30)
        await controller.start()
        stats = RequestStats()
        for _ in range(requests):
            stats.request()
        stats.response(404)
        ticket = controller.admit("profile")
        switch = asyncio.create_task(controller.set_mode("maintenance"))
        if draining:
            await asyncio.sleep(0.01)
        else:
            ticket.release()
            await switch
        for now in (1_700_000_000.1234, 1_700_000_000.9999999):
            expected = JSONResponse(status_document(controller, stats, now)).body
            assert status_json(controller, stats, now) == bytes(expected)
        ticket.release()
        await switch
        expected = JSONResponse(status_document(controller, stats, 5.0)).body
        assert status_json(controller, stats, 5.0) == bytes(expected)

    asyncio.run(check())


def test_status_json_follows_windows_reasons_and_bypasses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduled window, its reason and a bypassed request are in the pieced JSON as in the
    document."""
    figures = {"max_memory": 9, "allocated_memory": 8, "free_memory": 1, "used_memory": 7}
    monkeypatch.setattr(status_module, "_memory", lambda: figures)

    async def check() -> None:
        controller = ModeController()
        await controller.start()
        stats = RequestStats()
        soon = datetime.now(UTC) + timedelta(hours=1)
        await controller.set_mode(
            "maintenance", reason="upgrade", start_at=soon, until=soon + timedelta(hours=1)
        )
        controller.gate.admit_anyway("schema")
        body = status_json(controller, stats, 5.0)
        assert body == bytes(JSONResponse(status_document(controller, stats, 5.0)).body)
        assert b'"bypassed":{"schema":1}' in body and b'"reason":"upgrade"' in body

    asyncio.run(check())
