"""Issue 12 item 5: webhooks, received by a local test server that checks the signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from servermode.adapters.bootstrap import build_service
from servermode.adapters.cli.settings import Settings, SettingsError
from servermode.adapters.store.factory import MEMORY

from .servers import ThreadedService

pytestmark = pytest.mark.timeout(30)

SECRET = "webhook-secret-" + "k" * 16


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps what it is sent; answers 500 to the first
    ``fail_first`` requests and takes ``delay`` seconds over each."""

    def __init__(self, fail_first: int = 0, delay: float = 0.0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        self.delay = delay
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                receiver.attempts += 1
                failing = receiver.attempts <= receiver.fail_first
                if not failing:
                    receiver.received.append((dict(self.headers.items()), body))
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()

    def wait_for(self, n: int, within: float = 10) -> None:
        deadline = time.monotonic() + within
        while len(self.received) < n:
            assert time.monotonic() < deadline, f"{len(self.received)} of {n} received"
            time.sleep(0.02)


def verified(headers: dict[str, str], body: bytes) -> bool:
    timestamp = headers["Servermode-Timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(headers["Servermode-Signature"], "sha256=" + expected.hexdigest())


def test_every_record_is_posted_signed_and_retried() -> None:
    with (
        Receiver(fail_first=1).running() as receiver,
        ThreadedService(webhooks=receiver.url, webhook_secret=SECRET) as running,
    ):
        client = running.client()
        switched = client.post("/server/mode", json={"mode": "maintenance", "reason": "hooks"})
        receiver.wait_for(2)  # the record written at start, and the switch
        history = client.get("/server/transitions").json()["transitions"]
    assert switched.status_code == 200
    assert receiver.attempts == 3  # the first delivery failed once (500) and was retried
    by_id = {json.loads(body)["id"]: (headers, body) for headers, body in receiver.received}
    for record in history:
        headers, body = by_id[record["id"]]
        assert verified(headers, body)
        assert json.loads(body) == record  # the record, as the history keeps it
        assert headers["Content-Type"] == "application/json"
        assert headers["Servermode-Event"] == "mode_transition"
        assert abs(int(headers["Servermode-Timestamp"]) - time.time()) < 60
    switch = json.loads(by_id[history[0]["id"]][1])
    assert (switch["outcome"], switch["reason"], switch["to_state"]) == (
        "completed",
        "hooks",
        "maintenance",
    )
    # A body signed with another secret would not verify.
    headers, body = receiver.received[0]
    assert not verified(headers, body + b" ")


def test_a_slow_or_dead_endpoint_never_holds_up_a_switch() -> None:
    with Receiver(delay=3).running() as slow:
        dead = "http://127.0.0.1:9/nothing-listens-here"
        with ThreadedService(webhooks=f"{slow.url},{dead}", webhook_secret=SECRET) as running:
            client = running.client()
            started = time.monotonic()
            answers = [
                client.post("/server/mode", json={"mode": mode}).status_code
                for mode in ("maintenance", "production", "maintenance")
            ]
            took = time.monotonic() - started
    assert answers == [200, 200, 200]
    assert took < 2  # three switches while each delivery takes 3 s (or never arrives)


def test_webhooks_need_a_secret_and_urls() -> None:
    with pytest.raises(SettingsError, match="webhooks need a secret"):
        build_service(Settings(state=MEMORY, webhooks="http://127.0.0.1:1/x"))
    with pytest.raises(SettingsError, match="http:// or https:// URL"):
        build_service(Settings(state=MEMORY, webhooks="ftp://x/y", webhook_secret=SECRET))
    with pytest.raises(SettingsError, match="at least 16 characters"):
        build_service(Settings(state=MEMORY, webhooks="http://127.0.0.1:1/x", webhook_secret="s"))
