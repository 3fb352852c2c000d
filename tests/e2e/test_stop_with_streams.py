"""A `servermode serve` process with open event streams stops at once on SIGTERM.

uvicorn waits for open responses before its lifespan shutdown, for as long as
``--timeout-graceful-shutdown`` (here the drain timeout plus a second): a stream that did not
end when a stop begins would hold the process that long.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .servers import REPO, free_port, wait_until_live
from .sse import EventReader

pytestmark = pytest.mark.timeout(60)


def test_sigterm_ends_the_streams_and_the_process_within_two_seconds(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "servermode.adapters.cli",
                "serve",
                "--port",
                str(port),
                "--state",
                str(tmp_path / "servermode.db"),
                "--drain-timeout",
                "30",
                "--log-format",
                "json",
            ],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_live(url, process, output=log.read_text)
        streams = [EventReader(f"{url}/server/events") for _ in range(2)]
        for stream in streams:
            stream.next("status")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for stream in streams:
            assert stream.next("shutdown", timeout=5)["description"] == "the service is stopping"
            stream.join()
        process.wait(10)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    printed = log.read_text()
    assert took < 2.0, printed[-2000:]
    assert "Application shutdown complete" in printed
