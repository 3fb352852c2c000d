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
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from .harness import Options, Report, argument_parser, options_from

__all__ = ["LOAD_GENERATORS", "ServerProcess", "load", "load_generator", "server"]

ROOT = Path(__file__).resolve().parents[1]
#: "auto" = wrk when installed, else the asyncio client.
LOAD_GENERATORS = ("auto", "wrk", "asyncio")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def server(factory: str, probe: str) -> Iterator[ServerProcess]:
    """``uvicorn --factory <factory>`` on 127.0.0.1, ready once ``GET <probe>`` answers 200."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(process, url + probe, errors)
            yield ServerProcess(url, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def fresh_servers_per_round(
    factories: Mapping[str, str],
    probe: str,
    drive: Callable[[str], float],
    rounds: int,
    *,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """``drive(url)`` once per server and round, every round on servers started afresh.

    The servers start in alternating order each round and are driven in alternating order, so
    neither start order nor run order favours one side; ``warmup`` rounds are discarded.
    """
    names = list(factories)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for n in range(warmup + rounds):
        order = names if n % 2 == 0 else names[::-1]
        with contextlib.ExitStack() as stack:
            urls = {name: stack.enter_context(server(factories[name], probe)).url for name in order}
            for name in reversed(order) if n % 4 >= 2 else order:
                rate = drive(urls[name])
                if n >= warmup:
                    samples[name].append(rate)
    return samples


def _wait_ready(process: subprocess.Popen[bytes], url: str, errors: IO[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors.seek(0)
            raise RuntimeError(f"the server exited: {errors.read().decode(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the server did not answer {url} within 20 s")


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


def load(generator: str, url: str, *, connections: int, seconds: float) -> float:
    """Requests per second that ``generator`` completed against ``url`` (all of them 200s)."""
    if generator == "wrk":
        return _wrk(url, connections, seconds)
    return _asyncio_client(url, connections, seconds)


_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_BAD = re.compile(r"(Non-2xx or 3xx responses|Socket errors):.*")


def _wrk(url: str, connections: int, seconds: float) -> float:
    duration = f"{max(1, round(seconds))}s"
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}", url],
        capture_output=True,
        text=True,
        check=True,
    )
    bad = _WRK_BAD.search(done.stdout)
    if bad:
        raise RuntimeError(f"wrk against {url}: {bad.group(0)}")
    rate = _WRK_RATE.search(done.stdout)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{done.stdout}{done.stderr}")
    return float(rate.group(1))


def _asyncio_client(url: str, connections: int, seconds: float) -> float:
    done = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", url, "-c", str(connections), "-d", str(seconds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr}")
    result = json.loads(done.stdout)
    return float(result["requests"]) / float(result["seconds"])


# -- the asyncio client (this module as a program) ---------------------------------------------


async def _connection(host: str, port: int, request: bytes, until: float) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.perf_counter() < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            if status != b"200":
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


async def _drive(url: str, connections: int, seconds: float) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n"
    ).encode("ascii")
    start = time.perf_counter()
    counts = await asyncio.gather(
        *(_connection(host, port, request, start + seconds) for _ in range(connections))
    )
    return {"requests": sum(counts), "seconds": time.perf_counter() - start}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Keep-alive GET load on one URL; prints JSON.")
    parser.add_argument("url")
    parser.add_argument("-c", "--connections", type=int, default=16)
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="seconds")
    args = parser.parse_args(argv)
    result = asyncio.run(_drive(args.url, args.connections, args.duration))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
