"""Fleet mode (issue 11): the gate's cost with a fleet, the fleet switch latency, and scale.

Runs its own ``redis-server`` on a free loopback port (no persistence). Members run in this
one process, on one event loop, each with its own gate, fleet member and Redis connection
pool: as many instances as separate processes would be, minus the network between them.

1. **Gate cost**: ``admit`` + ``release`` on the gate of a fleet instance (its rounds running
   against Redis every ``period``) against the gate of a lone controller, interleaved round
   by round; the median ratio should be 1 within noise (no Redis call on the request path).
2. **Switch latency, 3 instances**: a ticket of the outgoing kind holds instance B; instance A
   asks for the other mode; once every instance drains, the ticket is released. Measured from
   that release to the instant the last instance's gate is in the new mode.
3. **Scale** (``--instances``, 200 by default): the same switch over every instance; Redis'
   commands per second at rest and during switches (``INFO stats``), and Redis' memory per
   instance (``used_memory`` with the fleet, minus before it, over the instances).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import structlog
from servermode.adapters.store.redis import RedisFleetEngine
from servermode.core import (
    CONTEXT_SERVICES,
    AuditLog,
    Gate,
    Mode,
    ModeController,
    State,
    Ticket,
)
from servermode.core.fleet import FleetMember, GateNode
from servermode.core.records import TransitionRecord

from .harness import Report, argument_parser, median, options_from, percentile
from .probes import quiet_audit

GATE_OPS = 20_000
PERIOD = 0.5
HEARTBEAT_TTL = 5.0
#: Seconds one switch of the benchmark may take before it is reported as a failure.
SWITCH_BOUND = 60


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server of this run's own on a free loopback port; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (make redis-server installs it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", directory,
             "--save", "", "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)


class TimedNode(GateNode):
    """A node that notes when its gate took each steady state."""

    settled_ns: int = 0

    async def settle(self, state: State, record: TransitionRecord) -> TransitionRecord:
        stored = await super().settle(state, record)
        self.settled_ns = time.perf_counter_ns()
        return stored


class Fleet:
    """``n`` members over one Redis, in this loop."""

    def __init__(self, url: str, n: int, prefix: str, audit: AuditLog) -> None:
        self.engines = [RedisFleetEngine(url, prefix=prefix) for _ in range(n)]
        self.nodes = [TimedNode(Gate(CONTEXT_SERVICES), audit=audit) for _ in range(n)]
        self.members = [
            FleetMember(
                engine,
                node,
                instance=f"i{k}",
                drain_timeout=30,
                heartbeat_ttl=HEARTBEAT_TTL,
                period=PERIOD,
            )
            for k, (engine, node) in enumerate(zip(self.engines, self.nodes, strict=True))
        ]

    async def __aenter__(self) -> Fleet:
        for member in self.members:
            await member.start()
            member.run_in_background()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for member, engine in zip(self.members, self.engines, strict=True):
            await member.stop()
            await engine.close()

    def states(self) -> set[State]:
        return {node.gate.state for node in self.nodes}

    async def switch(self, target: Mode) -> float:
        """One fleet switch held by a ticket on the second instance: ms from its release to
        the last instance's gate in ``target``."""
        held_on = self.nodes[1 % len(self.nodes)].gate
        category = "profile" if target is Mode.MAINTENANCE else "schema"
        ticket: Ticket = held_on.admit(category)
        asking = asyncio.create_task(self.members[0].switch(target))
        draining = {s for s in State if s.target is target}
        async with asyncio.timeout(SWITCH_BOUND):  # a failure is an error, never a hang
            while self.states() != draining:
                if asking.done():
                    asking.result()  # raises what failed
                    raise RuntimeError(f"the switch ended before every instance drained: {asking}")
                await asyncio.sleep(0.001)
            released = time.perf_counter_ns()
            ticket.release()
            await asking
            while self.states() != {target.state}:
                await asyncio.sleep(0.001)
        return (max(node.settled_ns for node in self.nodes) - released) / 1e6


async def gate_cost(url: str, rounds: int) -> list[float]:
    """Per-round ratio: seconds of GATE_OPS admit+release, fleet gate / lone gate.

    The fleet's rounds run during both measurements alike (each yields to the loop every 500
    operations, as requests would), so only the gates themselves differ.
    """
    ratios: list[float] = []
    with quiet_audit() as audit:
        lone = ModeController(audit=audit)
        await lone.start()
        async with Fleet(url, 3, "bench-gate", audit) as fleet:
            fleet_gate = fleet.nodes[0].gate
            for n in range(rounds + 1):
                first, second = (fleet_gate, lone.gate) if n % 2 else (lone.gate, fleet_gate)
                times = {id(first): await _timed(first), id(second): await _timed(second)}
                if n:  # the first round warms up
                    ratios.append(times[id(fleet_gate)] / times[id(lone.gate)])
    return ratios


async def _timed(gate: Gate) -> float:
    started = time.perf_counter()
    for n in range(GATE_OPS):
        gate.admit("profile").release()
        if n % 500 == 0:
            await asyncio.sleep(0)
    return time.perf_counter() - started


async def switch_latencies(url: str, n: int, switches: int, prefix: str) -> list[float]:
    latencies = []
    with quiet_audit() as audit:
        async with Fleet(url, n, prefix, audit) as fleet:
            target = Mode.MAINTENANCE
            for _ in range(switches):
                latencies.append(await fleet.switch(target))
                target = Mode.PRODUCTION if target is Mode.MAINTENANCE else Mode.MAINTENANCE
    return latencies


async def scale(url: str, n: int, switches: int) -> dict[str, float]:
    probe = RedisFleetEngine(url, prefix="probe")
    before = await probe.info()
    with quiet_audit() as audit:
        async with Fleet(url, n, "bench-scale", audit) as fleet:
            await asyncio.sleep(2 * PERIOD)
            rest_a = await probe.info()
            rest_t = time.monotonic()
            await asyncio.sleep(4 * PERIOD)
            rest_b = await probe.info()
            rest_s = time.monotonic() - rest_t
            memory = (rest_b["used_memory"] - before["used_memory"]) / n
            switch_t = time.monotonic()
            latencies = []
            target = Mode.MAINTENANCE
            for _ in range(switches):
                latencies.append(await fleet.switch(target))
                target = Mode.PRODUCTION if target is Mode.MAINTENANCE else Mode.MAINTENANCE
            switch_s = time.monotonic() - switch_t
            after = await probe.info()
    await probe.close()
    return {
        "commands_per_s_at_rest": _commands(rest_a, rest_b) / rest_s,
        "commands_per_s_switching": _commands(rest_b, after) / switch_s,
        # What a switch adds to the rounds' steady traffic, per instance.
        "commands_per_switch_per_instance": (
            _commands(rest_b, after) - _commands(rest_a, rest_b) / rest_s * switch_s
        )
        / switches
        / n,
        "memory_bytes_per_instance": memory,
        "switch_p50_ms": percentile(latencies, 50),
        "switch_max_ms": max(latencies),
        "switches": switches,
    }


def _commands(a: dict[str, Any], b: dict[str, Any]) -> float:
    return float(b["total_commands_processed"] - a["total_commands_processed"])


def measure(quick: bool, instances: int) -> Report:
    rounds = 3 if quick else 15
    switches = 3 if quick else 100
    scale_n = 10 if quick else instances
    scale_switches = 2 if quick else 5
    report = Report(
        "fleet",
        quick,
        {
            "gate_ops": GATE_OPS,
            "rounds": rounds,
            "switches": switches,
            "instances": scale_n,
            "period_s": PERIOD,
        },
    )
    with redis_server() as url:
        ratios = asyncio.run(gate_cost(url, rounds))
        three = asyncio.run(switch_latencies(url, 3, switches, "bench-three"))
        figures = asyncio.run(scale(url, scale_n, scale_switches))
    ratio = report.figure("gate_fleet_over_lone", median(ratios))
    report.table(
        "admit + release, fleet instance's gate / lone controller's gate (median of rounds)",
        ["min", "median", "max"],
        [(min(ratios), ratio, max(ratios))],
    )
    p50 = report.figure("switch_3_p50_ms", percentile(three, 50))
    p99 = report.figure("switch_3_p99_ms", percentile(three, 99))
    report.table(
        "fleet switch, 3 instances: last release -> every instance in the new mode (ms)",
        ["switches", "p50", "p99", "max"],
        [(len(three), p50, p99, max(three))],
    )
    for key, value in figures.items():
        report.figure(f"scale_{key}", value)
    report.table(
        f"scale: {scale_n} instances on one Redis",
        ["figure", "value"],
        [(key.replace("_", " "), value) for key, value in figures.items()],
    )
    report.check("fleet gate / lone gate, admit + release", ratio, 1.1, at_most=True)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argument_parser(__doc__ or "")
    parser.add_argument("--instances", type=int, default=200, help="instances of the scale run")
    args = parser.parse_args(argv)
    options = options_from(args)
    # The members' own info lines (one per instance and switch) would drown the report.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    measure(options.quick, args.instances).finish(options)


if __name__ == "__main__":
    main()
