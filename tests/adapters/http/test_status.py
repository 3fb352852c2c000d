"""The status document's pieces: the time format and the memory figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from servermode.adapters.http.status import MemoryFigures, format_time, process_memory_kb

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
