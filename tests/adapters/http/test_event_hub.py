"""The event hub alone: what one stream sends, and when, without a server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

from servermode.adapters.http import events
from servermode.adapters.http.events import EventHub, sse
from servermode.core import State, TransitionRecord

STEADY = {
    "state": "production",
    "mode": "production",
    "since": "2024-05-01T12:00:00.000Z",
    "in_flight": {"profile": 0},
    "timeout_policy": "force",
}


def record(n: int) -> TransitionRecord:
    return TransitionRecord.from_dict(
        {
            "from_state": "production",
            "to_state": "production",
            "target_mode": "production",
            "outcome": "noop",
            "at": "2024-05-01T12:00:00+00:00",
            "id": n,
        }
    )


def parse(chunk: bytes) -> list[tuple[str, Any]]:
    """The events of a chunk: (name, data), or ("comment", text)."""
    parsed = []
    for block in chunk.decode().split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith("retry:")]
        if not lines:
            continue
        if lines[0].startswith(":"):
            parsed.append(("comment", lines[0][1:].strip()))
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        parsed.append((fields["event"], json.loads(fields["data"])))
    return parsed


async def take(stream: AsyncIterator[bytes], timeout: float = 1.0) -> list[tuple[str, Any]]:
    return parse(await asyncio.wait_for(anext(stream), timeout))


def test_sse_puts_each_event_on_one_data_line() -> None:
    chunk = sse("transition", {"reason": "two\nlines\u2028"}, id=7)
    assert chunk == b'event: transition\nid: 7\ndata: {"reason":"two\\nlines\\u2028"}\n\n'


def test_stream_sends_hello_status_records_and_keepalives() -> None:
    async def run() -> None:
        hub = EventHub(steady_interval=0.05, keepalive=0.2)
        document = dict(STEADY)
        stream = hub.stream({"can_switch": True}, lambda: dict(document))
        assert await take(stream) == [("hello", {"can_switch": True})]
        assert await take(stream) == [("status", document)]
        # Nothing changed: silence, then a keepalive comment.
        assert await take(stream) == [("comment", "keepalive")]
        hub.publish(record(1))
        hub.publish(record(2))
        sent = await take(stream)
        assert [name for name, _ in sent] == ["transition", "transition", "status"]
        assert [data["id"] for _, data in sent[:2]] == [1, 2]
        document["in_flight"] = {"profile": 1}  # a change is noticed at the next look
        assert await take(stream) == [("status", document)]
        hub.close()
        assert await take(stream) == [("shutdown", {"description": "the service is stopping"})]
        assert await anext(stream, None) is None
        assert hub.open_streams == 0

    asyncio.run(run())


def test_a_drain_start_wakes_the_streams_and_drains_report_twice_a_second() -> None:
    async def run() -> None:
        hub = EventHub(drain_interval=0.05, steady_interval=10)
        document = dict(STEADY)
        stream = hub.stream({}, lambda: dict(document))
        await take(stream)
        await take(stream)
        document.update(state="draining_to_maintenance", target="maintenance")
        hub.wake(State.DRAINING_TO_MAINTENANCE)  # as the controller's drain listener
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert (await take(stream, timeout=0.5))[0][1]["state"] == "draining_to_maintenance"
        await take(stream, timeout=0.5)  # the same state, sent again: the time left moves
        assert loop.time() - started < 0.5
        hub.close()

    asyncio.run(run())


def test_records_published_from_another_thread_arrive() -> None:
    async def run() -> None:
        hub = EventHub(steady_interval=10)
        stream = hub.stream({}, lambda: dict(STEADY))
        await take(stream)
        await take(stream)
        publisher = threading.Thread(target=hub.publish, args=(record(9),))
        publisher.start()
        publisher.join()
        assert (await take(stream))[0] == ("transition", record(9).to_dict())
        hub.close()

    asyncio.run(run())


def test_a_stream_that_is_not_read_ends_instead_of_growing(monkeypatch: Any) -> None:
    monkeypatch.setattr(events, "MAX_PENDING", 3)

    async def run() -> None:
        hub = EventHub(steady_interval=10)
        stream = hub.stream({}, lambda: dict(STEADY))
        await take(stream)
        await take(stream)
        for n in range(5):
            hub.publish(record(n))
        sent = await take(stream)
        assert [data["id"] for name, data in sent if name == "transition"] == [0, 1, 2]
        assert await anext(stream, None) is None  # ended: the client reconnects and reads history

    asyncio.run(run())
