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
the method strays on the machine at hand, next to the gated ratio (an A/A row).

Both uvicorn stacks are measured (issue 14 item 3) when installed: ``h11`` (asyncio and h11,
what plain ``uvicorn`` serves with) and ``httptools`` (uvloop and httptools, what
``uvicorn[standard]`` brings): the bare app is faster on the second, so the gate's share of
each request is larger there.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from .apps import PROFILE_PATH
from .harness import (
    Options,
    Report,
    median,
    paired_ratios,
)
from .loadgen import (
    STACKS,
    Served,
    fresh_servers_per_round,
    load,
    load_generator,
    run_seconds,
    run_with_load_generator,
    uvicorn_factory,
)

TARGET_RATIO = 0.97
CONNECTIONS = 16
#: The modules each stack needs (``pip install 'servermode[fast]'`` brings uvicorn[standard]).
STACK_MODULES = {"h11": ("h11",), "httptools": ("httptools", "uvloop")}


def installed_stacks() -> list[str]:
    return [
        stack
        for stack in STACKS
        if all(importlib.util.find_spec(module) for module in STACK_MODULES[stack])
    ]


def measure(options: Options, generator_choice: str = "auto") -> Report:
    generator = load_generator(generator_choice)
    seconds, rounds, warmup = (0.5, 1, 0) if options.quick else (2.0, 16, 1)
    seconds = run_seconds(generator, seconds)
    stacks = installed_stacks()
    report = Report(
        "http_overhead",
        options.quick,
        {
            "load_generator": generator,
            "connections": CONNECTIONS,
            "seconds_per_run": seconds,
            "rounds": rounds,
            "stacks": " ".join(stacks),
        },
    )
    servers: dict[str, Served] = {}
    for stack in stacks:
        servers[f"bare, {stack}"] = uvicorn_factory("bench.apps:bare_server", stack)
        servers[f"bare again, {stack}"] = uvicorn_factory("bench.apps:bare_server", stack)
        servers[f"GateMiddleware, {stack}"] = uvicorn_factory("bench.apps:gated_server", stack)
    measured = fresh_servers_per_round(
        servers,
        PROFILE_PATH,
        lambda _, url: load(
            generator, url + PROFILE_PATH, connections=CONNECTIONS, seconds=seconds
        ),
        rounds,
        warmup=warmup,
    )
    rows = []
    for name, rate, low, high, cpu in measured.rows():
        report.figure(f"{name} requests/s", rate)
        report.figure(f"{name} server CPU us/request", cpu)
        rows.append((name, rate, low, high, cpu))
    report.table(
        f"GET {PROFILE_PATH} under uvicorn, {generator}, {CONNECTIONS} connections, "
        f"{seconds:g} s per run (median over rounds)",
        ("server, stack", "requests/s", "min", "max", "server CPU us/req"),
        rows,
    )
    for stack in stacks:
        bare, gated, again = (
            f"{kind}, {stack}" for kind in ("bare", "GateMiddleware", "bare again")
        )
        ratios = paired_ratios(measured.rates[gated], measured.rates[bare])
        # The same server measured against itself: how far this method strays with no effect.
        noise = paired_ratios(measured.rates[again], measured.rates[bare])
        report.table(
            f"{stack}: requests per second against bare, per round, and their medians",
            ("round", "GateMiddleware", "bare again (A/A)"),
            [(str(n + 1), g, b) for n, (g, b) in enumerate(zip(ratios, noise, strict=True))]
            + [
                ("median", median(ratios), median(noise)),
                (
                    "by server CPU per request",
                    measured.cpu_ratio(gated, bare),
                    measured.cpu_ratio(again, bare),
                ),
            ],
        )
        report.figure(f"{stack}: bare again / bare requests/s (A/A)", median(noise))
        report.figure(f"{stack}: bare again / bare by CPU (A/A)", measured.cpu_ratio(again, bare))
        report.figure(f"{stack}: GateMiddleware / bare by CPU", measured.cpu_ratio(gated, bare))
        report.check(
            f"GateMiddleware / bare requests per second, {stack}",
            report.figure(f"{stack}: GateMiddleware / bare requests/s", median(ratios)),
            TARGET_RATIO,
            at_most=False,
        )
    return report


def main(argv: Sequence[str] | None = None) -> None:
    run_with_load_generator(measure, __doc__, argv)


if __name__ == "__main__":
    main()
