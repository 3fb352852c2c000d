"""Item 2: the gate middleware's cost end to end, under uvicorn on 127.0.0.1.

The bare and the gated app of ``asgi_overhead`` each run in their own uvicorn process (free
port, one worker, access log off, log level warning, same event loop and HTTP parser), and a
separate load-generating process (``wrk``, or this project's asyncio client when ``wrk`` is not
installed; the output says which) drives ``GET /profiles/1`` on one of them at a time. The
servers take turns round by round, the order alternating. Target: gated/bare requests per
second >= 0.97.
"""

from __future__ import annotations

from collections.abc import Sequence

from .apps import PROFILE_PATH
from .harness import (
    Options,
    Report,
    interleaved,
    median,
    paired_ratios,
)
from .loadgen import load, load_generator, run_with_load_generator, server

TARGET_RATIO = 0.97
CONNECTIONS = 16


def measure(options: Options, generator_choice: str = "auto") -> Report:
    generator = load_generator(generator_choice)
    seconds, rounds, warmup = (0.5, 1, 0) if options.quick else (2.0, 30, 1)
    if generator == "wrk":
        seconds = max(1.0, seconds)  # wrk's durations are whole seconds
    report = Report(
        "http_overhead",
        options.quick,
        {
            "load_generator": generator,
            "connections": CONNECTIONS,
            "seconds_per_run": seconds,
            "rounds": rounds,
        },
    )
    with (
        server("bench.apps:bare_server", PROFILE_PATH) as bare,
        server("bench.apps:gated_server", PROFILE_PATH) as gated,
    ):
        urls = {"bare": bare.url + PROFILE_PATH, "GateMiddleware": gated.url + PROFILE_PATH}
        cases = {
            name: (lambda url=url: load(generator, url, connections=CONNECTIONS, seconds=seconds))
            for name, url in urls.items()
        }
        samples = interleaved(cases, rounds, warmup=warmup)

    ratios = paired_ratios(samples["GateMiddleware"], samples["bare"])
    rows = []
    for name, rates in samples.items():
        report.figure(f"{name} requests/s", median(rates))
        rows.append((name, median(rates), min(rates), max(rates)))
    report.table(
        f"GET {PROFILE_PATH} under uvicorn, {generator}, {CONNECTIONS} connections, "
        f"{seconds:g} s per run (median over rounds)",
        ("server", "requests/s", "min", "max"),
        rows,
    )
    report.table(
        "gated / bare requests per second, per round",
        ("round", "ratio"),
        [(str(n + 1), ratio) for n, ratio in enumerate(ratios)],
    )
    report.check(
        "GateMiddleware / bare requests per second",
        report.figure("GateMiddleware / bare requests/s", median(ratios)),
        TARGET_RATIO,
        at_most=False,
    )
    return report


def main(argv: Sequence[str] | None = None) -> None:
    run_with_load_generator(measure, __doc__, argv)


if __name__ == "__main__":
    main()
