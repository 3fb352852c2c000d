"""Timing and reporting shared by the benchmark scripts.

The machine the benchmarks run on is shared, so absolute figures drift from run to run. Every
script therefore measures its subject against a baseline in the same run, interleaving the two
round by round (alternating which goes first), and reports the median of the per-round ratios:
a burst of load from elsewhere hits both sides of a round alike and cancels out of its ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "Check",
    "Machine",
    "Options",
    "Report",
    "argument_parser",
    "interleaved",
    "median",
    "options_from",
    "paired_ratios",
    "parse_options",
    "percentile",
]

Cell = str | int | float
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Machine:
    """Where the figures came from."""

    nproc: int
    cpu_model: str
    python: str
    implementation: str
    system: str

    @classmethod
    def current(cls) -> Machine:
        return cls(
            nproc=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0,
            cpu_model=_cpu_model(),
            python=platform.python_version(),
            implementation=platform.python_implementation(),
            system=f"{platform.system()} {platform.release()} {platform.machine()}",
        )

    def describe(self) -> str:
        return (
            f"{self.nproc} CPU(s), {self.cpu_model}; {self.implementation} {self.python}; "
            f"{self.system}"
        )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass(frozen=True, slots=True)
class Check:
    """A measured figure against its target from the issue."""

    name: str
    value: float
    target: float
    at_most: bool  # True: the value must not exceed the target; False: must reach it
    unit: str = ""

    @property
    def met(self) -> bool:
        return self.value <= self.target if self.at_most else self.value >= self.target

    def describe(self) -> str:
        sign = "<=" if self.at_most else ">="
        verdict = "met" if self.met else "MISSED"
        value, target = _cell(self.value), _cell(self.target)
        return f"{self.name}: {value}{self.unit} (target {sign} {target}{self.unit}) {verdict}"


@dataclass(slots=True)
class _Table:
    title: str
    header: tuple[str, ...]
    rows: list[tuple[Cell, ...]]


@dataclass(slots=True)
class Report:
    """What one script measured: tables for people, figures and checks for the JSON file."""

    name: str
    quick: bool
    params: Mapping[str, Cell]
    machine: Machine = field(default_factory=Machine.current)
    figures: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    tables: list[_Table] = field(default_factory=list)

    def figure(self, key: str, value: float) -> float:
        self.figures[key] = value
        return value

    def table(self, title: str, header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> None:
        self.tables.append(_Table(title, tuple(header), [tuple(row) for row in rows]))

    def check(
        self, name: str, value: float, target: float, *, at_most: bool, unit: str = ""
    ) -> Check:
        check = Check(name, value, target, at_most, unit)
        self.checks.append(check)
        return check

    def render(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        lines = [f"== {self.name}{' (quick)' if self.quick else ''}: {params}"]
        lines.append(f"   machine: {self.machine.describe()}")
        for table in self.tables:
            lines.append("")
            lines.append(table.title)
            lines.extend(_format_table(table.header, table.rows))
        if self.checks:
            lines.append("")
            lines.extend(f"  {check.describe()}" for check in self.checks)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "quick": self.quick,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": asdict(self.machine),
            "params": dict(self.params),
            "figures": self.figures,
            "checks": [asdict(check) | {"met": check.met} for check in self.checks],
        }

    def finish(self, options: Options) -> None:
        """Print the report and write it as JSON when asked to."""
        print(self.render(), flush=True)
        if options.json is not None:
            options.json.parent.mkdir(parents=True, exist_ok=True)
            options.json.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def _cell(value: Cell) -> str:
    if isinstance(value, float):
        if abs(value) < 10:
            return f"{value:.2f}"
        return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def _format_table(header: tuple[str, ...], rows: list[tuple[Cell, ...]]) -> list[str]:
    cells = [list(header), *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    out = []
    for n, row in enumerate(cells):
        first, *rest = row
        line = first.ljust(widths[0]) + "".join(
            "  " + c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)
        )
        out.append("  " + line.rstrip())
        if n == 0:
            out.append("  " + "-" * len(line))
    return out


# -- measuring ---------------------------------------------------------------------------------


def interleaved(
    cases: Mapping[str, Callable[[], T]], rounds: int, *, warmup: int = 1
) -> dict[str, list[T]]:
    """Run every case once per round, alternating the order each round.

    Each case returns one sample (typically seconds for a fixed number of operations). The
    ``warmup`` rounds run first and are discarded. Returns the samples of each case, in round
    order, so that samples with the same index come from the same round.
    """
    names = list(cases)
    samples: dict[str, list[T]] = {name: [] for name in names}
    for n in range(warmup + rounds):
        order = names if n % 2 == 0 else names[::-1]
        for name in order:
            sample = cases[name]()
            if n >= warmup:
                samples[name].append(sample)
    return samples


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-round ratios of two interleaved cases."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (p in 0..100): a value that was actually measured."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


median = statistics.median


# -- command line ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    quick: bool
    json: Path | None


def argument_parser(description: str) -> argparse.ArgumentParser:
    """The options every script takes (``--quick``, ``--json``); a script may add its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts: checks the script runs, not the figures"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    return parser


def options_from(args: argparse.Namespace) -> Options:
    return Options(quick=args.quick, json=args.json)


def parse_options(description: str, argv: Sequence[str] | None = None) -> Options:
    parser = argument_parser(description)
    return options_from(parser.parse_args(sys.argv[1:] if argv is None else argv))
