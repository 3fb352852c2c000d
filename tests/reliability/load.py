"""Load against a real service: many clients, every category, answers checked one by one.

Each answer must be a 2xx, or a 503 with the documented error body; a demo answer must show
that its request ran only in states that admit its category (the demo reports the state it
saw when the handler started and ended). Transport failures are requests lost.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx2
import jsonschema
from servermode.adapters.http.openapi import SCHEMAS
from servermode.core import CONTEXT_SERVICES, State

from .conftest import FIGURES

#: (method, path, category) of what the clients send; {n} is a random id.
REQUESTS: tuple[tuple[str, str, str], ...] = (
    ("GET", "/profiles/{n}", "profile"),
    ("GET", "/customers/{n}", "profile"),  # a profile path the demo has no route for: 404
    ("GET", "/services/{n}", "service"),
    ("GET", "/metadata/profiles/extensions", "schema_read"),
    ("POST", "/metadata/profiles/extensions", "schema"),
    ("GET", "/server/status", "server"),
    ("GET", "/server/health/ready", "server"),
    ("GET", "/server/health/live", "server"),
)

_ERROR = jsonschema.Draft202012Validator({**SCHEMAS["Error"]})
_HEALTH = jsonschema.Draft202012Validator({**SCHEMAS["Health"]})


def origin(state: State) -> State:
    """The steady state a request was admitted in, judged from one it saw: a drain's source."""
    return state.mode.state


def ran_where_admitted(category: str, start: State, end: State, *, straggler: bool = False) -> bool:
    """Whether a request that saw ``start`` then ``end`` ran only where it may.

    It was admitted in a steady state that admits its category; while it ran, a switch may
    have begun (the drain of that state). A drain waits for the outgoing kind only, so it
    may have run on into a mode that admits its category too (schema_read, admitted in
    both), but never into one that refuses it, unless the drain timed out under ``force``
    and the request is one of its counted stragglers (and then a drain back to a mode that
    admits it does not wait for it either).
    """
    admitted_in = origin(start)
    if not CONTEXT_SERVICES.admits(admitted_in, category):
        return False
    if CONTEXT_SERVICES.admits(origin(end), category):
        return True
    return straggler


@dataclass
class Tally:
    """What the clients sent and got."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    ran: Counter[str] = field(default_factory=Counter)  # demo requests that ran, by category
    switched: dict[str, str] = field(default_factory=dict)  # request id -> outcome, 200 answers
    switch_refused: int = 0
    switch_failed: list[str] = field(default_factory=list)

    @property
    def switches(self) -> int:
        return sum(1 for o in self.switched.values() if o in ("completed", "forced"))

    def publish(self) -> None:
        FIGURES["requests sent"] += self.sent
        FIGURES["switches made"] += self.switches
        FIGURES["lost"] += len(self.lost)


def check_answer(tally: Tally, method: str, path: str, category: str, answer: Any) -> None:
    status: int = answer.status_code
    tally.statuses[status] += 1
    where = f"{method} {path} -> {status}"
    if status == 503:
        body = answer.json()
        validator = _HEALTH if path == "/server/health/ready" else _ERROR
        problems = [e.message for e in validator.iter_errors(body)]
        if problems or "retry-after" not in answer.headers:
            tally.violations.append(f"{where}: undocumented 503 {body} {problems}")
        elif path != "/server/health/ready" and body["code"] != 5030:
            tally.violations.append(f"{where}: 503 with code {body['code']}")
        return
    if status == 404 and path.startswith("/customers/") and _ERROR.is_valid(answer.json()):
        return
    if status != 200:
        tally.violations.append(f"{where}: {answer.text[:200]}")
        return
    if category == "server":
        return
    body = answer.json()
    seen = body.get("seen", {})
    start, end = State(seen["start"]), State(seen["end"])
    tally.ran[category] += 1
    if body["category"] != category or not ran_where_admitted(category, start, end):
        tally.violations.append(f"{where}: {category} request ran in {start} .. {end}")


async def client_loop(
    client: httpx2.AsyncClient,
    tally: Tally,
    stop: asyncio.Event,
    rng: random.Random,
    max_delay: float,
) -> None:
    while not stop.is_set():
        method, template, category = rng.choice(REQUESTS)
        path = template.format(n=rng.randint(1, 10_000))
        params = {"delay": f"{rng.uniform(0, max_delay):.3f}"} if category != "server" else {}
        tally.sent += 1
        try:
            answer = await client.request(method, path, params=params)
        except httpx2.HTTPError as exc:
            tally.lost.append(f"{method} {path}: {exc!r}")
            continue
        try:
            check_answer(tally, method, path, category, answer)
        except (ValueError, KeyError) as exc:
            tally.violations.append(f"{method} {path}: unreadable answer {exc!r}: {answer.text}")


async def switch(client: httpx2.AsyncClient, tally: Tally, mode: str, actor: str) -> int:
    """POST a switch to ``mode``; record what it answered; return the status."""
    request_id = f"{actor}-{uuid.uuid4().hex[:12]}"
    tally.sent += 1
    try:
        answer = await client.post(
            "/server/mode", json={"mode": mode}, headers={"X-Request-ID": request_id}
        )
    except httpx2.HTTPError as exc:
        tally.lost.append(f"POST /server/mode {mode}: {exc!r}")
        return 0
    tally.statuses[answer.status_code] += 1
    if answer.status_code == 200:
        if answer.json() != {"server changed": mode}:
            tally.violations.append(f"switch to {mode} answered {answer.text}")
        tally.switched[request_id] = answer.headers["servermode-outcome"]
    elif answer.status_code == 503 and _ERROR.is_valid(answer.json()):
        code = answer.json()["code"]
        if code == 5031:
            tally.switch_refused += 1
        else:
            tally.switch_failed.append(f"{code}: {answer.json()['description']}")
    else:
        tally.violations.append(f"switch to {mode}: {answer.status_code} {answer.text[:200]}")
    return int(answer.status_code)


async def flipper(
    client: httpx2.AsyncClient, tally: Tally, flips: int, rng: random.Random, pause: float
) -> None:
    """Flip the mode ``flips`` times (each waits for its drain), with short pauses between."""
    status = (await client.get("/server/status")).json()
    mode = status["mode"]
    for _ in range(flips):
        mode = "maintenance" if mode == "production" else "production"
        await switch(client, tally, mode, "flipper")
        await asyncio.sleep(rng.uniform(0, pause))


def new_client(url: str, connections: int) -> httpx2.AsyncClient:
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx2.AsyncClient(base_url=url, limits=limits, timeout=30)


async def run_load(
    url: str,
    *,
    clients: int,
    flips: int,
    seed: int,
    max_delay: float = 0.05,
    pause: float = 0.1,
) -> tuple[Tally, float]:
    """``clients`` looping clients while one flipper flips ``flips`` times; returns the tally."""
    rng = random.Random(seed)
    tally = Tally()
    stop = asyncio.Event()
    started = time.monotonic()
    async with new_client(url, clients + 4) as client:
        loops = [
            asyncio.create_task(
                client_loop(client, tally, stop, random.Random(rng.random()), max_delay)
            )
            for _ in range(clients)
        ]
        await flipper(client, tally, flips, rng, pause)
        stop.set()
        await asyncio.gather(*loops)
    return tally, time.monotonic() - started


async def settled_status(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """The status once nothing is in flight (or the last one read when time runs out)."""
    deadline = time.monotonic() + timeout
    async with httpx2.AsyncClient(base_url=url, timeout=5) as client:
        while True:
            status: dict[str, Any] = (await client.get("/server/status")).json()
            if not any(status["in_flight"].values()) or time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.02)


async def full_history(url: str) -> list[dict[str, Any]]:
    """Every transition record the service keeps, newest first."""
    records: list[dict[str, Any]] = []
    before: int | None = None
    async with httpx2.AsyncClient(base_url=url, timeout=10) as client:
        while True:
            params: dict[str, int] = {"limit": 500}
            if before is not None:
                params["before"] = before
            page = (await client.get("/server/transitions", params=params)).json()
            records += page["transitions"]
            before = page["next_before"]
            if before is None:
                return records
