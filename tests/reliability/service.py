"""A real ``servermode serve`` process on loopback, which the tests may kill and restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from tests.e2e.servers import REPO, free_port, wait_until_live


class ServiceProcess:
    """``python -m servermode.adapters.cli serve`` on a free port, keeping its state in ``state``.

    Its stdout and stderr go to ``log`` (appended across restarts), so that a chatty service
    never blocks on a full pipe and the test can read every line it wrote; with ``pipe`` they
    are read from a pipe into :attr:`lines` instead (for tests that limit file writes).
    """

    def __init__(
        self,
        state: Path,
        log: Path,
        *args: str,
        env: dict[str, str] | None = None,
        pipe: bool = False,
    ):
        self.state = state
        self.log = log
        self.args = args
        self.env = env or {}
        self.pipe = pipe
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None
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
        output: IO[bytes] | int = subprocess.PIPE if self.pipe else self.log.open("ab")
        try:
            self.process = subprocess.Popen(
                argv,
                cwd=REPO,
                env={**os.environ, **self.env},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if not isinstance(output, int):
                output.close()
        if self.pipe:
            self._reader = threading.Thread(target=self._read, args=(self.process,), daemon=True)
            self._reader.start()
        self._wait_live(timeout)
        return self

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.decode(errors="replace"))

    def output(self) -> str:
        return "".join(self.lines) if self.pipe else self.log.read_text()

    def _wait_live(self, timeout: float) -> None:
        assert self.process is not None
        wait_until_live(self.url, self.process, timeout=timeout, output=self.output)

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
        if self.process is None:
            return
        if self.process.poll() is None:
            self.signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(5)
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None
        if self.process.stdout is not None:
            self.process.stdout.close()

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
