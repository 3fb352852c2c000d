"""Item 1: the gate middleware's cost in process, through ASGI (no sockets).

A trivial Starlette app (one plain-text route) is called directly with a scope, a receive and
a send callable, a fixed number of requests per round, in three forms, interleaved round by
round: bare, behind ``GateMiddleware``, and behind ``BaseHTTPGate`` (the same gate as a
``BaseHTTPMiddleware``, the way most maintenance-mode packages are written). The request is
``GET /profiles/1``: a counted category, in production, so the gate classifies, admits, counts
and releases every one. Targets: gated/bare throughput >= 0.95; gated faster than the
BaseHTTPMiddleware version by a clear margin (taken here as >= 1.25x its throughput).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp

from .apps import (
    PROFILE_PATH,
    AdmitOnly,
    PassThrough,
    bare_app,
    basehttp_app,
    controller,
    gated_app,
    request_loop,
    started_loop,
)
from .harness import Options, Report, interleaved, median, paired_ratios, parse_options
from .probes import quiet_audit

TARGET_RATIO = 0.95
CLEAR_MARGIN = 1.25


def measure(options: Options) -> Report:
    requests, rounds = (200, 2) if options.quick else (5_000, 31)
    report = Report(
        "asgi_overhead", options.quick, {"requests_per_round": requests, "rounds": rounds}
    )
    with quiet_audit() as audit:
        floor = controller(audit)
        apps: dict[str, ASGIApp] = {
            "bare": bare_app(),
            "GateMiddleware": gated_app(controller(audit)),
            "BaseHTTPMiddleware gate": basehttp_app(controller(audit)),
            # What the gate's cost is made of: one layer, then one layer that admits.
            "pass-through layer": PassThrough(bare_app()),
            "admit + release layer": AdmitOnly(bare_app(), floor, "profile"),
        }
        lifespans = (apps["GateMiddleware"], apps["BaseHTTPMiddleware gate"])
        with started_loop(*lifespans, controllers=(floor,)) as loop:
            cases = {name: _round(loop, app, requests) for name, app in apps.items()}
            samples = interleaved(cases, rounds, warmup=2)

    bare = samples["bare"]
    rows: list[Sequence[str | float]] = []
    for name, seconds in samples.items():
        per_second = requests / median(seconds)
        throughput = median(paired_ratios(bare, seconds))  # time ratio inverted: throughput
        us_per_request = median(seconds) / requests * 1e6
        report.figure(f"{name} requests/s", per_second)
        report.figure(f"{name} us/request", us_per_request)
        report.figure(f"{name} throughput / bare", throughput)
        rows.append((name, per_second, us_per_request, throughput))
    report.table(
        f"GET {PROFILE_PATH} through ASGI, {requests:,} requests per round "
        "(median over rounds; ratio = median of per-round ratios)",
        ("app", "requests/s", "us/request", "x bare throughput"),
        rows,
    )
    gated = samples["GateMiddleware"]
    report.check(
        "GateMiddleware / bare throughput",
        median(paired_ratios(bare, gated)),
        TARGET_RATIO,
        at_most=False,
    )
    report.check(
        "GateMiddleware / BaseHTTPMiddleware gate throughput",
        report.figure(
            "GateMiddleware / BaseHTTPMiddleware throughput",
            median(paired_ratios(samples["BaseHTTPMiddleware gate"], gated)),
        ),
        CLEAR_MARGIN,
        at_most=False,
        unit="x",
    )
    return report


def _round(loop: asyncio.AbstractEventLoop, app: ASGIApp, requests: int) -> Callable[[], float]:
    run = request_loop(app, "GET", PROFILE_PATH)
    return lambda: loop.run_until_complete(run(requests))


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(__doc__ or "", argv)
    measure(options).finish(options)


if __name__ == "__main__":
    main()
