"""Real servers on loopback for end-to-end tests: uvicorn in a thread, or the CLI in a process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from servermode.adapters.bootstrap import Service, build_service
from servermode.adapters.cli.settings import Settings
from servermode.adapters.store.factory import MEMORY
from starlette.types import ASGIApp

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadedService:
    """The composed service served by a real uvicorn on 127.0.0.1 (a free port) in a thread.

    ``asgi_app`` gates that application instead of the one the settings name (``app``, or
    the demo); ``ws`` is uvicorn's WebSocket implementation (wsproto, as ``servermode serve``
    runs it).
    """

    def __init__(
        self, asgi_app: ASGIApp | None = None, ws: str = "wsproto", **settings: Any
    ) -> None:
        self.service: Service = build_service(
            replace(Settings(demo_delay=0.2, state=MEMORY), **settings), asgi_app
        )
        config = uvicorn.Config(
            self.service.app,
            host="127.0.0.1",
            port=0,
            log_config=None,
            log_level="warning",
            lifespan="on",
            ws=ws,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.url = ""
        self._clients: list[httpx2.Client] = []

    def __enter__(self) -> ThreadedService:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        for client in self._clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(10)

    def client(self, **kwargs: Any) -> httpx2.Client:
        """A client closed when the service stops."""
        client = httpx2.Client(base_url=self.url, timeout=10, **kwargs)
        self._clients.append(client)
        return client


def wait_until_live(
    url: str,
    process: subprocess.Popen[Any],
    path: str = "/server/health/live",
    timeout: float = 20,
    output: Callable[[], str] | None = None,
) -> None:
    """Wait until ``GET url+path`` answers 200; fail with the service's ``output`` if it exits."""

    def printed() -> str:
        if output is not None:
            return output()[-3000:]
        return str(process.stdout.read()) if process.stdout else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited: {printed()}")
        try:
            if httpx2.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not come up: {printed() if output is not None else ''}")


@contextmanager
def running_process(
    argv: Sequence[str],
    port: int,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
    live_path: str = "/server/health/live",
) -> Iterator[str]:
    """Run ``argv`` (a server on ``port``) in its own process group; stop it afterwards.

    Unless ``env`` names one, the service keeps its state in a fresh temporary SQLite file,
    so that no run inherits the mode another left behind.
    """
    state_dir = tempfile.TemporaryDirectory(prefix="servermode-e2e-")
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env={**os.environ, **fresh_state(state_dir.name), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_live(url, process, live_path)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if process.stdout:
            process.stdout.close()
        state_dir.cleanup()


def fresh_state(directory: str) -> dict[str, str]:
    return {"SERVERMODE_STATE": os.path.join(directory, "servermode.db")}


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``servermode ARGS`` as a user would, and capture what it prints."""
    with tempfile.TemporaryDirectory(prefix="servermode-cli-") as state_dir:
        return subprocess.run(
            [sys.executable, "-m", "servermode.adapters.cli", *args],
            cwd=REPO,
            env={**os.environ, **fresh_state(state_dir), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
