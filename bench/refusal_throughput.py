"""Item 5 (issue 14): a refusal by the gate (503) against a bare app's 200, requests per second.

During a drain every request of the outgoing kind is refused: the refusal is a hot path. The
gated app of ``asgi_overhead`` is started in maintenance, so ``GET /profiles/1`` (a profile
request) is refused by the gate with the documented error body and ``Retry-After``; the
baseline is the bare app answering the same request with a 200. Measured in process through
ASGI (as ``asgi_overhead``) and end to end (uvicorn, fresh servers each round, with a second
bare server as an A/A row, as ``http_overhead``). Every answer must have the expected status.
Target: refusals / bare 200s >= 0.9.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp

from .apps import PROFILE_PATH, bare_app, refusing_server, request_loop, started_loop
from .harness import Options, Report, interleaved, median, paired_ratios
from .loadgen import (
    fresh_servers_per_round,
    load,
    load_generator,
    run_seconds,
    run_with_load_generator,
    uvicorn_factory,
)

TARGET_RATIO = 0.9
CONNECTIONS = 16
EXPECTED = {"bare 200": 200, "bare 200 again": 200, "gate 503": 503}


def measure(options: Options, generator_choice: str = "auto") -> Report:
    generator = load_generator(generator_choice)
    requests, rounds = (200, 2) if options.quick else (5_000, 31)
    seconds, http_rounds, warmup = (0.5, 1, 0) if options.quick else (2.0, 12, 1)
    seconds = run_seconds(generator, seconds)
    report = Report(
        "refusal_throughput",
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
    servers = {
        "bare 200": uvicorn_factory("bench.apps:bare_server"),
        "bare 200 again": uvicorn_factory("bench.apps:bare_server"),
        "gate 503": uvicorn_factory("bench.apps:refusing_server", ready_status=503),
    }
    end_to_end = fresh_servers_per_round(
        servers,
        PROFILE_PATH,
        lambda name, url: load(
            generator,
            url + PROFILE_PATH,
            connections=CONNECTIONS,
            seconds=seconds,
            expect=EXPECTED[name],
        ),
        http_rounds,
        warmup=warmup,
    )
    rows = []
    for name, rate, _, _, cpu in end_to_end.rows():
        per_second = requests / median(in_process[name]) if name in in_process else 0.0
        report.figure(f"end to end {name} requests/s", rate)
        report.figure(f"end to end {name} server CPU us/request", cpu)
        if name in in_process:
            report.figure(f"in process {name} requests/s", per_second)
        rows.append((name, per_second, rate, cpu))
    report.table(
        f"GET {PROFILE_PATH} (median over rounds): in process {requests:,} requests per round; "
        f"end to end uvicorn (h11), {generator}, {CONNECTIONS} connections, {seconds:g} s per run",
        ("answer", "in process req/s", "end to end req/s", "server CPU us/req"),
        rows,
    )
    report.figure(
        "end to end A/A: bare again / bare", end_to_end.rate_ratio("bare 200 again", "bare 200")
    )
    report.figure("end to end A/A by CPU", end_to_end.cpu_ratio("bare 200 again", "bare 200"))
    report.figure("end to end 503 / 200 by CPU", end_to_end.cpu_ratio("gate 503", "bare 200"))
    report.check(
        "gate 503 / bare 200 throughput, in process",
        report.figure(
            "in process 503 / 200",
            median(paired_ratios(in_process["bare 200"], in_process["gate 503"])),
        ),
        TARGET_RATIO,
        at_most=False,
    )
    report.check(
        "gate 503 / bare 200 requests per second, end to end",
        report.figure(
            "end to end 503 / 200",
            end_to_end.rate_ratio("gate 503", "bare 200"),
        ),
        TARGET_RATIO,
        at_most=False,
    )
    return report


def _in_process(requests: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per round for ``requests`` calls, through ASGI."""
    apps: dict[str, tuple[ASGIApp, int]] = {
        "bare 200": (bare_app(), 200),
        "gate 503": (refusing_server(), 503),
    }
    with started_loop(apps["gate 503"][0]) as loop:
        cases = {name: _round(loop, app, expect, requests) for name, (app, expect) in apps.items()}
        return interleaved(cases, rounds, warmup=2)


def _round(
    loop: asyncio.AbstractEventLoop, app: ASGIApp, expect: int, requests: int
) -> Callable[[], float]:
    run = request_loop(app, "GET", PROFILE_PATH, expect)
    return lambda: loop.run_until_complete(run(requests))


def main(argv: Sequence[str] | None = None) -> None:
    run_with_load_generator(measure, __doc__, argv)


if __name__ == "__main__":
    main()
