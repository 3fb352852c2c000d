"""A fleet of real service processes on one redis-server of the test's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx2

from tests.adapters.store.redis_server import RedisServer, redis_server

from .servers import REPO, free_port, wait_until_live

#: Short periods, so that a test sees heartbeats expire within a second or two.
FAST = {"SERVERMODE_FLEET_PERIOD": "0.1", "SERVERMODE_FLEET_HEARTBEAT_TTL": "1.0"}


class Instance:
    """One ``servermode serve --fleet`` process, on its own port and SQLite file."""

    def __init__(self, name: str, redis: RedisServer, directory: Path, **env: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = directory / f"{name}.log"
        self.env = {
            **os.environ,
            **FAST,
            "SERVERMODE_STATE": str(directory / f"{name}.db"),
            "SERVERMODE_FLEET": redis.url,
            "SERVERMODE_INSTANCE_ID": name,
            "SERVERMODE_PORT": str(self.port),
            "SERVERMODE_DEMO_DELAY": "0",
            "SERVERMODE_LOG_FORMAT": "json",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Instance:
        with open(self.output, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "servermode.adapters.cli", "serve"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_live(self) -> None:
        assert self.process is not None
        wait_until_live(self.url, self.process, output=self.log)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def get(self, path: str, **kwargs: Any) -> httpx2.Response:
        return httpx2.get(self.url + path, timeout=kwargs.pop("timeout", 10), **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx2.Response:
        return httpx2.post(self.url + path, timeout=kwargs.pop("timeout", 15), **kwargs)

    def switch(self, mode: str, **kwargs: Any) -> httpx2.Response:
        return self.post("/server/mode", json={"mode": mode}, **kwargs)

    def status(self) -> dict[str, Any]:
        document: dict[str, Any] = self.get("/server/status").json()
        return document

    def fleet(self) -> dict[str, Any]:
        document: dict[str, Any] = self.get("/server/fleet").json()
        return document


@contextmanager
def fleet_of(*names: str, **env: str) -> Iterator[tuple[RedisServer, dict[str, Instance]]]:
    """A redis-server and one started instance per name (started in parallel)."""
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleet-")))
        instances = {name: Instance(name, redis, directory, **env) for name in names}

        def kill_all() -> None:  # those added by the test too
            for instance in instances.values():
                instance.kill(signal.SIGKILL)

        stack.callback(kill_all)
        for instance in instances.values():
            instance.start()
        for instance in instances.values():
            instance.wait_live()
        yield redis, instances


def add_instance(
    redis: RedisServer, instances: dict[str, Instance], name: str, **env: str
) -> Instance:
    """Start one more instance in the directory of the others (the test's fleet_of kills it)."""
    directory = next(iter(instances.values())).output.parent
    instance = Instance(name, redis, directory, **env).start()
    instances[name] = instance
    instance.wait_live()
    return instance


class Background:
    """A call run in a thread, its result (or exception) and when it ended."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.ended: float | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended = time.monotonic()

    def join(self, timeout: float = 15) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the call did not end in time"
        if self.error is not None:
            raise self.error
        return self.result

    @property
    def done(self) -> bool:
        return self.ended is not None


def until(predicate: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.02)


def flip_under_load(names: str, flips: int, clients: int) -> None:
    """Clients send every category through every instance while the fleet flips ``flips``
    times through random instances. No request runs (as the app observes it) in a mode that
    refuses its category, every answer is a 200 or a 503, and every switch that answered
    200 has exactly one fleet record."""
    import random

    from servermode.core import CONTEXT_SERVICES, State

    routes = [
        ("GET", "/profiles/1", "profile"),
        ("GET", "/services/1", "service"),
        ("GET", "/metadata/profiles/extensions", "schema_read"),
        ("POST", "/metadata/profiles/extensions", "schema"),
    ]
    with fleet_of(*names, SERVERMODE_DRAIN_TIMEOUT="5") as (_, fleet):
        instances = list(fleet.values())
        stop = threading.Event()
        seen: list[tuple[str, str, str]] = []
        errors: list[str] = []

        def hammer(seed: int) -> None:
            rng = random.Random(seed)
            with httpx2.Client(timeout=10) as client:
                while not stop.is_set():
                    method, path, category = rng.choice(routes)
                    url = rng.choice(instances).url + f"{path}?delay={rng.choice([0, 0.02, 0.1])}"
                    answer = client.request(method, url)
                    if answer.status_code == 200:
                        body = answer.json()
                        seen.append((category, body["seen"]["start"], body["seen"]["end"]))
                    elif answer.status_code != 503:
                        errors.append(f"{method} {url}: {answer.status_code} {answer.text}")

        workers = [threading.Thread(target=hammer, args=(n,), daemon=True) for n in range(clients)]
        for worker in workers:
            worker.start()
        rng = random.Random(7)
        switched = 0
        mode = "production"
        try:
            for _ in range(flips):
                mode = "maintenance" if mode == "production" else "production"
                answer = rng.choice(instances).switch(mode)
                assert answer.status_code == 200, answer.text
                switched += answer.headers["Servermode-Outcome"] != "noop"
                # Traffic flows in each mode before the next flip (each admits a category),
                # however slowly a loaded machine runs the clients.
                served = len(seen)
                until(lambda n=served: len(seen) >= n + 5, what=f"requests served in {mode}")
        finally:
            stop.set()
            for worker in workers:
                worker.join(15)
        assert errors == []
        assert len(seen) > 50
        # Admitted in a mode that admits it, and still in such a mode when it ended (a drain
        # under way is the mode it leaves: it may not end before the request does).
        wrong = [
            s
            for s in seen
            if not all(CONTEXT_SERVICES.admits(State(state).mode.state, s[0]) for state in s[1:])
        ]
        assert wrong == []
        answer = instances[0].get("/server/fleet", params={"limit": 500})
        records = [r for r in answer.json()["records"] if r["outcome"] != "initialized"]
        assert len(records) == switched == flips
        assert len({r["epoch"] for r in records}) == len(records)
