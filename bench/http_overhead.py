"""Item 2: the gate middleware's cost end to end, under uvicorn on 127.0.0.1.

The bare and the gated app of ``asgi_overhead`` each run in their own uvicorn process (free
port, one worker, access log off, log level warning, same event loop and HTTP parser), and a
separate load-generating process (``wrk``, or this project's asyncio client when ``wrk`` is not
installed; the output says which) drives ``GET /profiles/1`` on one of them at a time. The
servers take turns round by round, the order alternating. Target: gated/bare requests per
second >= 0.97.

Each round starts the servers afresh, in alternating order: two identical bare servers
started once and kept for every round measured 0.93 against each other here (the one started
second was slower throughout), a bias as large as the effect measured. A second bare server,
"bare again", runs in every round too: its ratio to the first (no effect at all) shows how far
the method strays on the machine at hand, next to the gated ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

from .apps import PROFILE_PATH
from .harness import (
    Options,
    Report,
    median,
    paired_ratios,
)
from .loadgen import fresh_servers_per_round, load, load_generator, run_with_load_generator

TARGET_RATIO = 0.97
CONNECTIONS = 16


def measure(options: Options, generator_choice: str = "auto") -> Report:
    generator = load_generator(generator_choice)
    seconds, rounds, warmup = (0.5, 1, 0) if options.quick else (2.0, 20, 1)
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
    samples = fresh_servers_per_round(
        {
            "bare": "bench.apps:bare_server",
            "bare again": "bench.apps:bare_server",
            "GateMiddleware": "bench.apps:gated_server",
        },
        PROFILE_PATH,
        lambda url: load(generator, url + PROFILE_PATH, connections=CONNECTIONS, seconds=seconds),
        rounds,
        warmup=warmup,
    )

    ratios = paired_ratios(samples["GateMiddleware"], samples["bare"])
    # The same server measured against itself: how far this method strays with no effect at all.
    noise = paired_ratios(samples["bare again"], samples["bare"])
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
        "requests per second against bare, per round, and their medians",
        ("round", "GateMiddleware", "bare again"),
        [(str(n + 1), g, b) for n, (g, b) in enumerate(zip(ratios, noise, strict=True))]
        + [("median", median(ratios), median(noise))],
    )
    report.figure("bare again / bare requests/s (no effect: the method's noise)", median(noise))
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
