"""Servers in their own processes and a load generator in another, all on 127.0.0.1.

- :class:`ServerProcess`: ``uvicorn --factory`` on a free port, one worker, access log off,
  log level warning (the same for every server a benchmark compares).
- :func:`load`: drive one URL for a while with ``wrk`` (Debian's package) or, when ``wrk`` is
  not installed, with the asyncio client of this module run as a separate process
  (``python -m bench.loadgen``): HTTP/1.1 keep-alive connections, each sending its next
  request when the previous response is complete.

Every response must be a 200: a refusal, an error or a socket error fails the benchmark
rather than counting as a fast request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from .harness import Options, Report, argument_parser, median, options_from, paired_ratios

__all__ = [
    "LOAD_GENERATORS",
    "STACKS",
    "Load",
    "Measured",
    "Served",
    "ServerProcess",
    "fresh_servers_per_round",
    "load",
    "load_generator",
    "server",
    "servermode_serve",
    "uvicorn_app",
    "uvicorn_factory",
]

ROOT = Path(__file__).resolve().parents[1]
#: "auto" = wrk when installed, else the asyncio client.
LOAD_GENERATORS = ("auto", "wrk", "asyncio")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: uvicorn's event loop and HTTP parser per stack: the standard library's asyncio and h11 (what
#: a plain ``pip install uvicorn`` serves with), or ``uvicorn[standard]``'s uvloop and httptools.
STACKS: Mapping[str, tuple[str, ...]] = {
    "h11": ("--loop", "asyncio", "--http", "h11"),
    "httptools": ("--loop", "uvloop", "--http", "httptools"),
}


@dataclass(frozen=True, slots=True)
class Served:
    """How to start one server: the arguments after ``python -m`` (the host and port are added)
    and the status its probe answers once it is ready."""

    argv: tuple[str, ...]
    ready_status: int = 200


def uvicorn_factory(
    factory: str, stack: str | None = "h11", *, access_log: bool = False, ready_status: int = 200
) -> Served:
    """``uvicorn --factory <factory>``, one worker, log level warning (info with the access log).

    ``stack`` None leaves the choice to uvicorn ("auto": httptools and uvloop when installed).
    """
    logging = (
        ("--log-level", "info") if access_log else ("--no-access-log", "--log-level", "warning")
    )
    chosen = STACKS[stack] if stack is not None else ()
    return Served(
        ("uvicorn", "--factory", factory, "--workers", "1", *chosen, *logging), ready_status
    )


def uvicorn_app(app: str, *, access_log: bool = False) -> Served:
    """``uvicorn APP [--no-access-log]`` as a user runs it: its defaults (stack ``auto``)."""
    return Served(("uvicorn", app) + (() if access_log else ("--no-access-log",)))


def servermode_serve(app: str, *options: str) -> Served:
    """``servermode serve --app APP`` as shipped, its state in memory (no file to clean up)."""
    return Served(
        ("servermode.adapters.cli", "serve", "--app", app, "--state", ":memory:", *options)
    )


@dataclass(frozen=True, slots=True)
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far."""
        return process_cpu_seconds(self.process.pid)


def process_cpu_seconds(pid: int) -> float:
    """A process's CPU time from ``/proc/<pid>/stat`` (Linux; in clock ticks, 10 ms here)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Load:
    """What one load run completed: requests in seconds."""

    requests: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


@dataclass(slots=True)
class Measured:
    """Per server, one value per round: requests per second, and the server's CPU time per
    request (microseconds). Under saturation a single-threaded server's throughput is the
    inverse of its CPU time per request, and the CPU time is much less disturbed by other
    processes on the machine than the wall clock: it is reported beside the rates."""

    rates: dict[str, list[float]]
    cpu_us: dict[str, list[float]]

    def rate_ratio(self, subject: str, baseline: str) -> float:
        """Median of the per-round ratios of requests per second."""
        return median(paired_ratios(self.rates[subject], self.rates[baseline]))

    def cpu_ratio(self, subject: str, baseline: str) -> float:
        """Median of the per-round ratios of CPU time per request, inverted (baseline over
        subject): the throughput ratio the servers' own CPU time predicts."""
        return median(paired_ratios(self.cpu_us[baseline], self.cpu_us[subject]))

    def rows(self) -> list[tuple[str, float, float, float, float]]:
        """name, median requests/s, min, max, median CPU us per request."""
        return [
            (name, median(rates), min(rates), max(rates), median(self.cpu_us[name]))
            for name, rates in self.rates.items()
        ]


@contextlib.contextmanager
def server(served: Served | str, probe: str) -> Iterator[ServerProcess]:
    """The server ``served`` describes on 127.0.0.1 at a free port, ready once ``GET <probe>``
    answers its ready status. A string is a factory for :func:`uvicorn_factory`.

    Its standard error (logs, the access log when on) goes to a temporary file, shown if the
    server exits early.
    """
    if isinstance(served, str):
        served = uvicorn_factory(served)
    port = free_port()
    command = [sys.executable, "-m", *served.argv, "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(process, url + probe, served.ready_status, errors)
            yield ServerProcess(url, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def fresh_servers_per_round(
    servers: Mapping[str, Served | str],
    probe: str,
    drive: Callable[[str, str], Load],
    rounds: int,
    *,
    warmup: int = 1,
) -> Measured:
    """``drive(name, url)`` once per server and round, every round on servers started afresh.

    The servers start in alternating order each round and are driven in alternating order, so
    neither start order nor run order favours one side; ``warmup`` rounds are discarded.
    """
    names = list(servers)
    measured = Measured({name: [] for name in names}, {name: [] for name in names})
    for n in range(warmup + rounds):
        order = names if n % 2 == 0 else names[::-1]
        with contextlib.ExitStack() as stack:
            running = {name: stack.enter_context(server(servers[name], probe)) for name in order}
            for name in reversed(order) if n % 4 >= 2 else order:
                served = running[name]
                cpu, done = timed_load(served, functools.partial(drive, name, served.url))
                if n >= warmup:
                    measured.rates[name].append(done.rate)
                    measured.cpu_us[name].append(cpu)
    return measured


def timed_load(served: ServerProcess, run: Callable[[], Load]) -> tuple[float, Load]:
    """``run()`` and the server's CPU microseconds per request it completed."""
    before = served.cpu_seconds()
    done = run()
    return (served.cpu_seconds() - before) / max(1, done.requests) * 1e6, done


def _wait_ready(process: subprocess.Popen[bytes], url: str, status: int, errors: IO[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors.seek(0)
            raise RuntimeError(f"the server exited: {errors.read().decode(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == status:
                    return
        except urllib.error.HTTPError as answer:
            if answer.code == status:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server did not answer {url} with {status} within 20 s")


# -- the load ----------------------------------------------------------------------------------


def run_with_load_generator(
    measure: Callable[[Options, str], Report], doc: str | None, argv: Sequence[str] | None
) -> None:
    """The ``main`` of a script that loads a server: the common options and ``--load-generator``."""
    parser = argument_parser(doc or "")
    parser.add_argument(
        "--load-generator",
        choices=LOAD_GENERATORS,
        default="auto",
        help="wrk, the asyncio client, or auto (wrk when installed)",
    )
    args = parser.parse_args(argv)
    options = options_from(args)
    measure(options, args.load_generator).finish(options)


def load_generator(choice: str) -> str:
    """The generator ``choice`` ("auto", "wrk", "asyncio") resolves to on this machine."""
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "asyncio"
    if choice == "wrk" and not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (apt-get install wrk), use --load-generator auto")
    return choice


def run_seconds(generator: str, seconds: float) -> float:
    """How long one run of ``generator`` lasts when asked for ``seconds``: wrk's durations are
    whole seconds (at least 1), so that is what a report records for it."""
    return float(max(1, round(seconds))) if generator == "wrk" else seconds


def load(generator: str, url: str, *, connections: int, seconds: float, expect: int = 200) -> Load:
    """Requests per second that ``generator`` completed against ``url``, every answer ``expect``
    (anything else, or a socket error, fails the run)."""
    if generator == "wrk":
        return _wrk(url, connections, seconds, expect)
    return _asyncio_client(url, connections, seconds, expect)


_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(m?s)")
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WRK_SOCKET_ERRORS = re.compile(r"Socket errors:.*")


def _wrk(url: str, connections: int, seconds: float, expect: int) -> Load:
    duration = f"{run_seconds('wrk', seconds):g}s"
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}", url],
        capture_output=True,
        text=True,
        check=True,
    )
    out = done.stdout
    rate, total = _WRK_RATE.search(out), _WRK_TOTAL.search(out)
    if rate is None or total is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}{done.stderr}")
    errors = _WRK_SOCKET_ERRORS.search(out)
    if errors:
        raise RuntimeError(f"wrk against {url}: {errors.group(0)}")
    # wrk counts answers outside 2xx/3xx without telling them apart: a refusal benchmark needs
    # all of them outside, an ordinary one none (the server's own status was checked at start).
    non_2xx = _WRK_NON_2XX.search(out)
    outside = int(non_2xx.group(1)) if non_2xx else 0
    wanted = int(total.group(1)) if expect >= 400 else 0
    if outside != wanted:
        raise RuntimeError(f"wrk against {url}: {outside} answers not 2xx/3xx, expected {wanted}")
    took = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    return Load(int(total.group(1)), took)


def _asyncio_client(url: str, connections: int, seconds: float, expect: int) -> Load:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            url,
            "-c",
            str(connections),
            "-d",
            str(seconds),
            "--expect",
            str(expect),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr}")
    result = json.loads(done.stdout)
    return Load(int(result["requests"]), float(result["seconds"]))


# -- the asyncio client (this module as a program) ---------------------------------------------


async def _connection(host: str, port: int, request: bytes, until: float, expect: bytes) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.perf_counter() < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            if status != expect:
                raise RuntimeError(f"status {status.decode()}: {head[:200]!r}")
            match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if match is None:
                raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
            await reader.readexactly(int(match.group(1)))
            done += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return done


async def _drive(url: str, connections: int, seconds: float, expect: int) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n"
    ).encode("ascii")
    status = str(expect).encode("ascii")
    start = time.perf_counter()
    counts = await asyncio.gather(
        *(_connection(host, port, request, start + seconds, status) for _ in range(connections))
    )
    return {"requests": sum(counts), "seconds": time.perf_counter() - start}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Keep-alive GET load on one URL; prints JSON.")
    parser.add_argument("url")
    parser.add_argument("-c", "--connections", type=int, default=16)
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="seconds")
    parser.add_argument("--expect", type=int, default=200, help="the status every answer has")
    args = parser.parse_args(argv)
    result = asyncio.run(_drive(args.url, args.connections, args.duration, args.expect))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
