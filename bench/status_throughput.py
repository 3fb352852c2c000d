"""Item 6: ``GET /server/status`` throughput against a bare JSON endpoint of the same size.

Both routes are served by the composed service (gate middleware, admin dispatch), in the same
category (``server``, admitted always, not counted): the static route answers a status
document taken once at start, with the same keys, size and headers; the status route reads
the controller, the counters and the process's memory figures on every request. Measured in
process through ASGI and end to end (one uvicorn process, a separate load generator taking
turns on the two paths), interleaved round by round. Target: status/bare >= 0.9.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
from collections.abc import Awaitable, Callable, Sequence

from .apps import STATIC_JSON_PATH, STATUS_PATH, request_loop, started_loop, status_service
from .harness import (
    Options,
    Report,
    interleaved,
    median,
    paired_ratios,
)
from .loadgen import load, load_generator, run_seconds, run_with_load_generator, server, timed_load

TARGET_RATIO = 0.9
CONNECTIONS = 16
#: "bare JSON again" is the same route measured as a case of its own: an A/A row.
PATHS = {"bare JSON": STATIC_JSON_PATH, "bare JSON again": STATIC_JSON_PATH, "status": STATUS_PATH}


def measure(options: Options, generator_choice: str = "auto") -> Report:
    generator = load_generator(generator_choice)
    requests, rounds = (200, 2) if options.quick else (5_000, 31)
    seconds, http_rounds, warmup = (0.5, 1, 0) if options.quick else (3.0, 8, 1)
    seconds = run_seconds(generator, seconds)
    report = Report(
        "status_throughput",
        options.quick,
        {
            "requests_per_round": requests,
            "rounds": rounds,
            "load_generator": generator,
            "connections": CONNECTIONS,
            "seconds_per_run": seconds,
            "http_rounds": http_rounds,
        },
    )
    in_process = _in_process(requests, rounds)
    with server("bench.apps:status_server", STATIC_JSON_PATH) as served:
        cases = {
            name: functools.partial(
                timed_load,
                served,
                functools.partial(
                    load, generator, served.url + path, connections=CONNECTIONS, seconds=seconds
                ),
            )
            for name, path in PATHS.items()
        }
        runs = interleaved(cases, http_rounds, warmup=warmup)
    end_to_end = {name: [done.rate for _, done in samples] for name, samples in runs.items()}
    cpu_us = {name: [cpu for cpu, _ in samples] for name, samples in runs.items()}

    in_process_ratio = median(paired_ratios(in_process["bare JSON"], in_process["status"]))
    http_ratio = median(paired_ratios(end_to_end["status"], end_to_end["bare JSON"]))
    report.figure(
        "in process A/A: bare JSON again / bare JSON",
        median(paired_ratios(in_process["bare JSON"], in_process["bare JSON again"])),
    )
    report.figure(
        "end to end A/A: bare JSON again / bare JSON",
        median(paired_ratios(end_to_end["bare JSON again"], end_to_end["bare JSON"])),
    )
    # The server's CPU time per request of each path, inverted: the throughput it predicts.
    report.figure(
        "end to end A/A by server CPU",
        median(paired_ratios(cpu_us["bare JSON"], cpu_us["bare JSON again"])),
    )
    report.figure(
        "end to end status / bare JSON by server CPU",
        median(paired_ratios(cpu_us["bare JSON"], cpu_us["status"])),
    )
    rows = []
    for name, path in PATHS.items():
        per_second = requests / median(in_process[name])
        rate = median(end_to_end[name])
        report.figure(f"in process {name} requests/s", per_second)
        report.figure(f"end to end {name} requests/s", rate)
        report.figure(f"end to end {name} server CPU us/request", median(cpu_us[name]))
        rows.append((f"{name}: GET {path}", per_second, rate, median(cpu_us[name])))
    report.table(
        f"requests per second (median over rounds): in process {requests:,} requests per round; "
        f"end to end {generator}, {CONNECTIONS} connections, {seconds:g} s per run",
        ("route", "in process", "end to end", "server CPU us/req"),
        rows,
    )
    report.check(
        "status / bare JSON throughput, in process",
        report.figure("in process status / bare JSON", in_process_ratio),
        TARGET_RATIO,
        at_most=False,
    )
    report.check(
        "status / bare JSON requests per second, end to end",
        report.figure("end to end status / bare JSON", http_ratio),
        TARGET_RATIO,
        at_most=False,
    )
    return report


def _in_process(requests: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per round for ``requests`` calls of each path, through ASGI."""
    app = status_service().app
    with contextlib.ExitStack() as stack:
        # The controller's start writes one audit record to stdout: keep it out of the report.
        with contextlib.redirect_stdout(io.StringIO()):
            loop = stack.enter_context(started_loop(app))
        cases: dict[str, Callable[[], float]] = {
            name: _round(loop, request_loop(app, "GET", path), requests)
            for name, path in PATHS.items()
        }
        return interleaved(cases, rounds, warmup=2)


def _round(
    loop: asyncio.AbstractEventLoop, run: Callable[[int], Awaitable[float]], requests: int
) -> Callable[[], float]:
    return lambda: loop.run_until_complete(run(requests))


def main(argv: Sequence[str] | None = None) -> None:
    run_with_load_generator(measure, __doc__, argv)


if __name__ == "__main__":
    main()
