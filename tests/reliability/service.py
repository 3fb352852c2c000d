"""A real ``servermode serve`` process on loopback, which the tests may kill and restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx2

from tests.e2e.servers import REPO, free_port


class ServiceProcess:
    """``python -m servermode.adapters.cli serve`` on a free port, keeping its state in ``state``.

    Its stdout and stderr go to ``log`` (appended across restarts), so that a chatty service
    never blocks on a full pipe and the test can read every line it wrote.
    """

    def __init__(self, state: Path, log: Path, *args: str, env: dict[str, str] | None = None):
        self.state = state
        self.log = log
        self.args = args
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> ServiceProcess:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [
            sys.executable,
            "-m",
            "servermode.adapters.cli",
            "serve",
            "--port",
            str(port),
            "--state",
            str(self.state),
            "--log-format",
            "json",
            *self.args,
        ]
        output: IO[bytes] = self.log.open("ab")
        with output:
            self.process = subprocess.Popen(
                argv,
                cwd=REPO,
                env={**os.environ, **self.env},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_live(timeout)
        return self

    def _wait_live(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx2.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.url} did not come up: {self.log.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(5)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def raw_request(url: str, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` as it is on a fresh connection and return all the server answered."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)
