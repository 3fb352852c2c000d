"""Item 3: the gate's admit + release per operation, against a bare lock-protected counter.

The baseline is the least a thread-safe in-flight count can cost: a ``threading.Lock`` taken
to increment and again to decrement, inline. The gate does the same two lock round trips, plus
the policy lookup, the ticket and two method calls. Target: within 2x of the baseline.
A "minimal ticket API" row (a one-field ticket over the bare counter) shows how much of the
gap any admit-returns-a-ticket design pays in CPython before doing any gate work.
Every case also runs from two threads at once on one shared gate (one shared counter).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

from servermode.core import Gate, Mode, ModeController, Ticket

from .harness import Options, Report, interleaved, median, paired_ratios, parse_options
from .probes import counted_category, quiet_audit

TARGET_RATIO = 2.0
THREADS = 2


class _Count:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


def bare_counter(ops: int) -> Callable[[], float]:
    lock = threading.Lock()
    count = _Count()

    def run() -> float:
        start = time.perf_counter()
        for _ in range(ops):
            with lock:
                count.n += 1
            with lock:
                count.n -= 1
        return time.perf_counter() - start

    return run


class _MinimalTicket:
    __slots__ = ("_count", "_lock")

    def __init__(self, lock: threading.Lock, count: _Count) -> None:
        self._lock = lock
        self._count = count

    def release(self) -> None:
        with self._lock:
            self._count.n -= 1


def minimal_ticket(ops: int) -> Callable[[], float]:
    """The floor of any admit-returns-a-ticket API: the bare counter plus two calls and a ticket."""
    lock = threading.Lock()
    count = _Count()

    def admit(category: str) -> _MinimalTicket:
        with lock:
            count.n += 1
        return _MinimalTicket(lock, count)

    def run() -> float:
        start = time.perf_counter()
        for _ in range(ops):
            admit("profile").release()
        return time.perf_counter() - start

    return run


def gate_admission(admit: Callable[[str], Ticket], category: str, ops: int) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        for _ in range(ops):
            admit(category).release()
        return time.perf_counter() - start

    return run


def contended(loop: Callable[[], float], threads: int = THREADS) -> Callable[[], float]:
    """Run ``loop`` in ``threads`` threads released together; the wall time until all end."""

    def run() -> float:
        barrier = threading.Barrier(threads + 1)

        def worker() -> None:
            barrier.wait()
            loop()

        workers = [threading.Thread(target=worker) for _ in range(threads)]
        for w in workers:
            w.start()
        barrier.wait()
        start = time.perf_counter()
        for w in workers:
            w.join()
        return time.perf_counter() - start

    return run


def measure(options: Options) -> Report:
    ops, rounds = (500, 2) if options.quick else (20_000, 41)
    with quiet_audit() as audit:
        controller = ModeController(audit=audit)
        asyncio.run(controller.start())
    gate: Gate = controller.gate
    category = counted_category(controller, Mode.PRODUCTION)

    report = Report("admission", options.quick, {"ops_per_round": ops, "rounds": rounds})
    cases: dict[str, Callable[[], float]] = {
        "bare lock counter": bare_counter(ops),
        "minimal ticket API": minimal_ticket(ops),
        "gate.admit + release": gate_admission(gate.admit, category, ops),
        "controller.admit + release": gate_admission(controller.admit, category, ops),
    }
    single = interleaved(cases, rounds)
    threaded = interleaved({name: contended(case) for name, case in cases.items()}, rounds)

    rows: list[Sequence[str | float]] = []
    for label, samples, per_round in (
        ("1 thread", single, ops),
        (f"{THREADS} threads", threaded, ops * THREADS),
    ):
        base = samples["bare lock counter"]
        for name, seconds in samples.items():
            ratio = median(paired_ratios(seconds, base))
            ns_per_op = median(seconds) / per_round * 1e9
            key = f"{label} {name}"
            report.figure(f"{key} ns/op", ns_per_op)
            report.figure(f"{key} ratio", ratio)
            rows.append((name, label, ns_per_op, ratio))
        gated = median(paired_ratios(samples["gate.admit + release"], base))
        report.check(f"gate / bare counter, {label}", gated, TARGET_RATIO, at_most=True, unit="x")
    report.table(
        "admit + release per operation (median over rounds; ratio = median of per-round ratios)",
        ("case", "threads", "ns/op", "x bare"),
        rows,
    )
    return report


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(__doc__ or "", argv)
    measure(options).finish(options)


if __name__ == "__main__":
    main()
