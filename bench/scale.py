"""Item 5: 10,000 requests in flight (asyncio tasks parked, each holding a ticket) when
maintenance is requested.

Checked on every wave: the drain counted all of them when it began; no request ended after
the new mode was in force (the drain did not complete early); the gate opened after the last
release, with nothing in flight. The requests wake together but end over 16 loop iterations,
so the drain has 15 chances to complete too soon.

Measured, as waves of two kinds interleaved: "quiet" (nothing else waits on the requests) and
"awaited" (the requests are gathered while they run, as a server's own bookkeeping would: one
callback per ending request on the loop, and gather's final one walks all 10,000). The figure
is the latency from the last release to the new state (target 1 ms, as for a single switch)
and, against a bare future resolved at the same instant, the switch's own share of it.

Memory: the tracemalloc peak until every request is in flight, against the same wave whose
tasks park the same way without admitting (interleaved rounds); the difference per request is
what the gate costs. The drain adds nothing per request (its snapshot is per category).
Target: under 1 KiB per request.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from servermode.core import Mode, Outcome, State, Ticket

from .harness import Options, Report, interleaved, median, parse_options
from .probes import TimedGate, counted_category, settle, timed_controller

TARGET_LATENCY_MS = 1.0
TARGET_BYTES_PER_REQUEST = 1024
SPREAD = 16  # loop iterations over which the requests of a wave end


@dataclass(slots=True)
class Wave:
    """What the requests of one wave saw as they ended.

    Just before the last release, ``probe`` is resolved: a bare future a task waits on. Its
    wake-up, queued right ahead of the switch's, is the baseline: the least any reaction to
    that release could take with the loop as busy as it is.
    """

    gate: TimedGate
    expected: int
    probe: asyncio.Future[None]
    released: int = 0
    late: int = 0  # requests that ended after the new mode was already in force
    last_release_ns: int = 0

    def release(self, ticket: Ticket) -> None:
        if self.gate.state is not State.DRAINING_TO_MAINTENANCE:
            self.late += 1
        self.last_release_ns = time.perf_counter_ns()
        self.released += 1
        if self.released == self.expected:
            self.probe.set_result(None)
        ticket.release()


@dataclass(frozen=True, slots=True)
class WaveResult:
    latency_ns: int  # last release -> gate in the new state
    baseline_ns: int  # last release -> a bare future's waiter woke
    drain_ns: int  # the requests told to end -> gate in the new state
    peak_bytes: int  # traced peak until every request is in flight (0: not traced)


async def request(
    admit: Callable[[str], Ticket] | None, category: str, go: asyncio.Event, wave: Wave, n: int
) -> None:
    """One request parked in the app; with ``admit`` None it parks the same way, ungated."""
    ticket = admit(category) if admit is not None else None
    try:
        await go.wait()
        for _ in range(n % SPREAD):
            await asyncio.sleep(0)
    finally:
        if ticket is not None:
            wave.release(ticket)


async def run_wave(
    requests: int, *, gated: bool, traced: bool = False, awaited: bool = False
) -> WaveResult:
    """One wave; ``awaited``: every request is awaited (gather) while it runs, as a server's
    own bookkeeping would, which queues a callback per ending request on the loop."""
    loop = asyncio.get_running_loop()
    expected = requests if gated else 0
    async with timed_controller() as (controller, gate):
        category = counted_category(controller, Mode.PRODUCTION)
        wave = Wave(gate, expected, loop.create_future())
        probe_woke = 0

        async def watch_probe() -> None:
            nonlocal probe_woke
            await wave.probe
            probe_woke = time.perf_counter_ns()

        watcher = asyncio.create_task(watch_probe())
        go = asyncio.Event()
        admit = controller.admit if gated else None
        gc.collect()
        if traced:
            tracemalloc.start()
        start_bytes = tracemalloc.get_traced_memory()[0]
        tasks = [
            asyncio.create_task(request(admit, category, go, wave, n)) for n in range(requests)
        ]
        await settle(2)
        in_flight = gate.total_in_flight
        # The peak with every request in flight. Traced no further: in the ungated run the
        # switch completes at once, and its audit record would be counted against that run.
        peak = tracemalloc.get_traced_memory()[1] - start_bytes if traced else 0
        tracemalloc.stop()
        switch = asyncio.create_task(controller.set_mode(Mode.MAINTENANCE, actor="bench"))
        await settle()
        told = time.perf_counter_ns()
        go.set()
        if awaited:
            await asyncio.gather(*tasks)
        record = await switch
        await asyncio.gather(*tasks)
        if gated:
            await watcher
        else:
            watcher.cancel()

    problems = []
    if in_flight != expected or record.in_flight.get(category, 0) != expected:
        problems.append(f"{in_flight} in flight, drain counted {record.in_flight}")
    if record.outcome is not Outcome.COMPLETED or gate.state is not State.MAINTENANCE:
        problems.append(f"switch ended {record.outcome} in {gate.state}")
    if wave.released != expected or wave.late:
        problems.append(f"{wave.released} released, {wave.late} after the new mode was in force")
    if gated and not (gate.in_flight_at_open == 0 and gate.opened_ns > wave.last_release_ns):
        problems.append("the gate opened before the last request ended")
    if problems:
        raise AssertionError(f"wave of {requests} (gated={gated}): " + "; ".join(problems))
    last = wave.last_release_ns
    return WaveResult(gate.opened_ns - last, probe_woke - last, gate.opened_ns - told, peak)


def measure(options: Options) -> Report:
    requests, rounds = (200, 1) if options.quick else (10_000, 5)
    report = Report("scale", options.quick, {"requests": requests, "rounds": rounds})

    def wave(**kwargs: bool) -> Callable[[], WaveResult]:
        return lambda: asyncio.run(run_wave(requests, **kwargs))

    waves = interleaved(
        {"quiet": wave(gated=True), "awaited": wave(gated=True, awaited=True)}, rounds
    )
    rows: list[tuple[str, float, float]] = []
    for style, results in waves.items():
        for label, key, values in (
            ("last release -> new mode in force", "latency", [w.latency_ns for w in results]),
            (
                "last release -> bare wake-up (baseline)",
                "baseline",
                [w.baseline_ns for w in results],
            ),
            (
                "switch's own share (difference)",
                "own",
                [w.latency_ns - w.baseline_ns for w in results],
            ),
            ("requests told to end -> new mode", "drain", [w.drain_ns for w in results]),
        ):
            ms = [v / 1e6 for v in values]
            report.figure(f"{style} {key} median ms", median(ms))
            report.figure(f"{style} {key} max ms", max(ms))
            rows.append((f"{style}: {label} (ms)", median(ms), max(ms)))
    report.check(
        "worst last release -> new mode in force, quiet loop",
        report.figures["quiet latency max ms"],
        TARGET_LATENCY_MS,
        at_most=True,
        unit=" ms",
    )
    report.check(
        "worst switch's own share, requests awaited",
        report.figures["awaited own max ms"],
        TARGET_LATENCY_MS,
        at_most=True,
        unit=" ms",
    )

    peaks = interleaved(
        {
            "gated": wave(gated=True, traced=True),
            "ungated": wave(gated=False, traced=True),
        },
        rounds,
        warmup=0,
    )
    gated = [w.peak_bytes for w in peaks["gated"]]
    ungated = [w.peak_bytes for w in peaks["ungated"]]
    per_request = [(g - u) / requests for g, u in zip(gated, ungated, strict=True)]
    rows.append(("peak traced memory, gated (KiB)", median(gated) / 1024, max(gated) / 1024))
    rows.append(("peak traced memory, ungated (KiB)", median(ungated) / 1024, max(ungated) / 1024))
    rows.append(("extra bytes per in-flight request", median(per_request), max(per_request)))
    report.figure("peak gated bytes", median(gated))
    report.figure("peak ungated bytes", median(ungated))
    report.figure("extra bytes per request", median(per_request))
    report.check(
        "extra memory per in-flight request (worst round)",
        max(per_request),
        TARGET_BYTES_PER_REQUEST,
        at_most=True,
        unit=" B",
    )
    report.table(
        f"{requests:,} requests in flight when maintenance is requested ({rounds} rounds)",
        ("figure", "median", "max"),
        rows,
    )
    return report


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(__doc__ or "", argv)
    measure(options).finish(options)


if __name__ == "__main__":
    main()
