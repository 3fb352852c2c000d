"""The gate middleware: admission before the app, refusals, in-flight accounting, lifespan."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from servermode.adapters.http.classify import RouteRules
from servermode.adapters.http.middleware import WS_TRY_AGAIN_LATER, GateMiddleware
from servermode.core import InMemoryStore, ModeController

from ..asgi import Message, Peer, http_scope, ws_scope

pytestmark = pytest.mark.timeout(10)

REQUEST = {"type": "http.request", "body": b"", "more_body": False}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def started(controller: ModeController) -> ModeController:
    await controller.start()
    return controller


class TestAdmission:
    def test_admitted_request_reaches_the_app(self) -> None:
        """A request the mode admits is passed to the app and answered by it."""

        async def scenario() -> Peer:
            gate = GateMiddleware(ok_app, await started(ModeController()))
            peer = Peer(REQUEST)
            await gate(http_scope(path="/profiles/1"), peer.receive, peer.send)
            return peer

        peer = run(scenario())
        assert (peer.status, peer.body) == (200, b"ok")

    def test_refused_request_gets_503_naming_the_mode(self) -> None:
        """A request the mode refuses never reaches the app: 503, error body, Retry-After."""
        called = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            called.append(scope["path"])

        async def scenario() -> Peer:
            controller = ModeController(initial_mode="maintenance", refusal_retry_after=42)
            gate = GateMiddleware(app, await started(controller))
            peer = Peer(REQUEST)
            await gate(http_scope(path="/profiles/1"), peer.receive, peer.send)
            return peer

        peer = run(scenario())
        assert called == []
        assert peer.status == 503
        assert peer.headers["retry-after"] == "42"
        assert json.loads(peer.body) == {
            "http_method": "GET",
            "title": "service unavailable",
            "description": "the operation is unavailable while the server is in maintenance "
            "mode (profile request)",
            "code": 5030,
            "uri": "http://testserver/profiles/1",
        }

    def test_refusal_while_switching_says_so(self) -> None:
        """While draining, requests of both modes are refused, saying a switch is under way."""

        async def scenario() -> tuple[Peer, Peer]:
            controller = await started(ModeController(drain_timeout=5))
            gate = GateMiddleware(ok_app, controller)
            ticket = controller.admit("profile")
            switch = asyncio.create_task(controller.set_mode("maintenance"))
            await asyncio.sleep(0.01)
            profile, schema = Peer(REQUEST), Peer(REQUEST)
            await gate(http_scope("GET", "/profiles/1"), profile.receive, profile.send)
            await gate(http_scope("POST", "/metadata/x"), schema.receive, schema.send)
            ticket.release()
            await switch
            return profile, schema

        profile, schema = run(scenario())
        for peer in (profile, schema):
            assert peer.status == 503
            assert 1 <= int(peer.headers["retry-after"]) <= 5
            assert (
                "switching from production to maintenance" in json.loads(peer.body)["description"]
            )

    def test_rules_must_name_known_categories(self) -> None:
        """Rules naming a category the policy lacks are rejected when the middleware is built."""
        rules = RouteRules.from_table([("*", "/x", "nonsense")], default="profile")
        with pytest.raises(ValueError, match="nonsense"):
            GateMiddleware(ok_app, ModeController(), rules)

    def test_classification_uses_the_normal_path(self) -> None:
        """Dot segments cannot carry a profile request into the always-open server category."""
        seen: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["path"])
            await ok_app(scope, receive, send)

        async def scenario() -> Peer:
            controller = await started(ModeController(initial_mode="maintenance"))
            gate = GateMiddleware(app, controller)
            escaped = Peer(REQUEST)
            await gate(http_scope(path="/server/../profiles/1"), escaped.receive, escaped.send)
            status = Peer(REQUEST)
            await gate(http_scope(path="/profiles/..//server/status"), status.receive, status.send)
            return escaped

        escaped = run(scenario())
        assert escaped.status == 503
        # What the app routes is what was classified.
        assert seen == ["/server/status"]


class TestInFlight:
    def test_counted_until_the_app_returns(self) -> None:
        """A request counts until the app's call returns: work after the last chunk included.

        (A Starlette ``BackgroundTask`` runs after the response's last chunk, inside the call.)
        """
        counts: list[tuple[str, int]] = []

        async def scenario() -> None:
            controller = await started(ModeController())

            async def streaming(scope: Any, receive: Any, send: Any) -> None:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                for part in (b"a", b"b"):
                    await send({"type": "http.response.body", "body": part, "more_body": True})
                    counts.append(("streaming", controller.gate.in_flight()["profile"]))
                await send({"type": "http.response.body", "body": b"c", "more_body": False})
                await asyncio.sleep(0)  # background work after the response
                counts.append(("after last chunk", controller.gate.in_flight()["profile"]))

            peer = Peer(REQUEST)
            await GateMiddleware(streaming, controller)(
                http_scope(path="/profiles/1"), peer.receive, peer.send
            )
            counts.append(("returned", controller.gate.in_flight()["profile"]))

        run(scenario())
        assert counts == [
            ("streaming", 1),
            ("streaming", 1),
            ("after last chunk", 1),
            ("returned", 0),
        ]

    def test_released_once_when_the_app_raises(self) -> None:
        """An app that fails still releases its request, and the error propagates."""

        async def scenario() -> dict[str, int]:
            controller = await started(ModeController())

            async def broken(scope: Any, receive: Any, send: Any) -> None:
                raise RuntimeError("boom")

            peer = Peer(REQUEST)
            with pytest.raises(RuntimeError, match="boom"):
                await GateMiddleware(broken, controller)(
                    http_scope(path="/services/1"), peer.receive, peer.send
                )
            return controller.gate.in_flight()

        assert run(scenario())["service"] == 0

    def test_released_when_the_request_is_cancelled(self) -> None:
        """A client that goes away (the task is cancelled) releases its request."""

        async def scenario() -> tuple[int, int]:
            controller = await started(ModeController())

            async def slow(scope: Any, receive: Any, send: Any) -> None:
                await asyncio.sleep(10)

            peer = Peer(REQUEST)
            task = asyncio.create_task(
                GateMiddleware(slow, controller)(
                    http_scope(path="/profiles/1"), peer.receive, peer.send
                )
            )
            await asyncio.sleep(0.01)
            during = controller.gate.total_in_flight
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return during, controller.gate.total_in_flight

        assert run(scenario()) == (1, 0)

    def test_released_when_sending_fails(self) -> None:
        """A send that fails (client disconnected mid-body) still releases exactly once."""

        async def scenario() -> int:
            controller = await started(ModeController())

            async def failing_send(message: Message) -> None:
                if message["type"] == "http.response.body":
                    raise OSError("client disconnected")

            peer = Peer(REQUEST)
            with pytest.raises(OSError):
                await GateMiddleware(ok_app, controller)(
                    http_scope(path="/profiles/1"), peer.receive, failing_send
                )
            return controller.gate.total_in_flight

        assert run(scenario()) == 0

    def test_a_drain_waits_for_a_streaming_response(self) -> None:
        """A switch requested mid-stream completes only after the stream's last chunk."""
        events: list[str] = []

        async def scenario() -> None:
            controller = await started(ModeController(drain_timeout=5))
            release_last = asyncio.Event()

            async def streaming(scope: Any, receive: Any, send: Any) -> None:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"a", "more_body": True})
                await release_last.wait()
                events.append("last chunk")
                await send({"type": "http.response.body", "body": b"b"})

            peer = Peer(REQUEST)
            request = asyncio.create_task(
                GateMiddleware(streaming, controller)(
                    http_scope(path="/profiles/1"), peer.receive, peer.send
                )
            )
            await asyncio.sleep(0.01)
            switch = asyncio.create_task(controller.set_mode("maintenance"))
            await asyncio.sleep(0.05)
            events.append(f"switch done: {switch.done()}")
            release_last.set()
            record = await switch
            events.append(str(record.outcome))
            await request

        run(scenario())
        assert events == ["switch done: False", "last chunk", "completed"]

    def test_uncounted_categories_are_not_in_flight(self) -> None:
        """Status requests (category server) are admitted but never counted."""

        async def scenario() -> int:
            controller = await started(ModeController())
            observed = []

            async def app(scope: Any, receive: Any, send: Any) -> None:
                observed.append(controller.gate.total_in_flight)
                await ok_app(scope, receive, send)

            peer = Peer(REQUEST)
            await GateMiddleware(app, controller)(
                http_scope(path="/server/status"), peer.receive, peer.send
            )
            return observed[0]

        assert run(scenario()) == 0


WS_CONNECT = {"type": "websocket.connect"}
DENIAL = {"websocket.http.response": {}}


def server_side(peer: Peer) -> Peer:
    """Make ``peer`` answer a server-side close as uvicorn does: a disconnect for the app."""

    def on_send(message: Message) -> None:
        if message["type"] == "websocket.close":
            peer.queue.put_nowait({"type": "websocket.disconnect", "code": message["code"]})

    peer.on_send.append(on_send)
    return peer


async def echo_socket(scope: Any, receive: Any, send: Any) -> None:
    """Accept, then echo until disconnected."""
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text", "")})


class TestWebSocket:
    def test_refused_websocket_is_closed_with_1013(self) -> None:
        """Without the denial-response extension, a refused handshake is closed with 1013."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError("the app must not see a refused connection")

        async def scenario() -> Peer:
            controller = await started(ModeController(initial_mode="maintenance"))
            peer = Peer(WS_CONNECT)
            await GateMiddleware(app, controller)(
                ws_scope("/profiles/live"), peer.receive, peer.send
            )
            return peer

        peer = run(scenario())
        assert peer.sent == [{"type": "websocket.close", "code": WS_TRY_AGAIN_LATER, "reason": ""}]

    def test_refused_websocket_gets_503_where_the_server_offers_a_response(self) -> None:
        """With ``websocket.http.response``, the handshake is answered 503 and the error body."""

        async def scenario() -> Peer:
            controller = ModeController(initial_mode="maintenance", refusal_retry_after=42)
            peer = Peer(WS_CONNECT)
            await GateMiddleware(echo_socket, await started(controller))(
                ws_scope("/profiles/live", extensions=DENIAL), peer.receive, peer.send
            )
            return peer

        peer = run(scenario())
        assert peer.types() == ["websocket.http.response.start", "websocket.http.response.body"]
        start, body = peer.sent
        assert start["status"] == 503
        headers = {k.decode(): v.decode() for k, v in start["headers"]}
        assert headers["retry-after"] == "42"
        assert headers["content-type"] == "application/json"
        assert json.loads(body["body"]) == {
            "http_method": "GET",
            "title": "service unavailable",
            "description": "the operation is unavailable while the server is in maintenance "
            "mode (profile request)",
            "code": 5030,
            "uri": "ws://testserver/profiles/live",
        }

    def test_a_websocket_path_with_a_hidden_dot_segment_is_refused_400(self) -> None:
        """An encoded slash hiding a dot segment gets 400 at the handshake, never the app."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError("the app must not see this path")

        async def scenario() -> tuple[Peer, int]:
            controller = await started(ModeController())
            peer = Peer(WS_CONNECT)
            scope = ws_scope("/profiles/x/../../a/1", extensions=DENIAL)
            scope["raw_path"] = b"/profiles/x%2F..%2F..%2Fa/1"
            await GateMiddleware(app, controller)(scope, peer.receive, peer.send)
            return peer, controller.gate.total_in_flight

        peer, in_flight = run(scenario())
        assert peer.sent[0]["status"] == 400
        assert json.loads(peer.sent[1]["body"])["code"] == 4020
        assert in_flight == 0

    def test_admitted_websocket_counts_until_it_ends(self) -> None:
        """An open WebSocket is in flight; it is released when the app returns."""

        async def scenario() -> tuple[int, int]:
            controller = await started(ModeController())
            during = []

            async def app(scope: Any, receive: Any, send: Any) -> None:
                await receive()
                await send({"type": "websocket.accept"})
                during.append(controller.gate.in_flight()["profile"])
                await send({"type": "websocket.close", "code": 1000})

            peer = Peer(WS_CONNECT)
            await GateMiddleware(app, controller)(
                ws_scope("/profiles/live"), peer.receive, peer.send
            )
            return during[0], controller.gate.in_flight()["profile"]

        assert run(scenario()) == (1, 0)


class TestWebSocketDrain:
    """A drain closes (1012) the open WebSockets whose category its target refuses."""

    def test_a_socket_the_target_refuses_is_closed_and_counted(self) -> None:
        """The profile socket is closed as the drain begins; the switch ends when its app does."""

        async def scenario() -> tuple[Peer, Any, int]:
            controller = await started(ModeController(drain_timeout=5))
            gate = GateMiddleware(echo_socket, controller)
            peer = server_side(Peer(WS_CONNECT))
            socket = asyncio.create_task(gate(ws_scope("/profiles/1"), peer.receive, peer.send))
            await asyncio.sleep(0.01)
            record = await asyncio.wait_for(controller.set_mode("maintenance"), 1)
            await socket
            return peer, record, controller.gate.total_in_flight

        peer, record, in_flight = run(scenario())
        assert peer.sent == [
            {"type": "websocket.accept"},
            {"type": "websocket.close", "code": 1012, "reason": "switching to maintenance mode"},
        ]
        assert record.closed == {"profile": 1}
        assert record.in_flight["profile"] == 1
        assert str(record.outcome) == "completed"
        assert in_flight == 0

    def test_a_socket_the_target_admits_stays_open(self) -> None:
        """A metadata-read socket (both modes admit it) is left open and keeps echoing."""

        async def scenario() -> tuple[Peer, Any]:
            controller = await started(ModeController(drain_timeout=0.1))
            gate = GateMiddleware(echo_socket, controller)
            peer = server_side(Peer(WS_CONNECT))
            socket = asyncio.create_task(
                gate(ws_scope("/metadata/profiles/live"), peer.receive, peer.send)
            )
            await asyncio.sleep(0.01)
            record = await controller.set_mode("maintenance")
            peer.queue.put_nowait({"type": "websocket.receive", "text": "still here"})
            await asyncio.sleep(0.01)
            peer.queue.put_nowait({"type": "websocket.disconnect", "code": 1000})
            await socket
            return peer, record

        peer, record = run(scenario())
        assert record.closed == {}
        assert peer.sent == [
            {"type": "websocket.accept"},
            {"type": "websocket.send", "text": "still here"},
        ]

    def test_the_close_waits_for_a_send_under_way_and_stops_later_sends(self) -> None:
        """A send in progress completes before the close; a send after it raises in the app."""
        outcome: list[str] = []

        async def scenario() -> tuple[Peer, Any, int]:
            controller = await started(ModeController(drain_timeout=5))
            sending = asyncio.Event()
            unblock = asyncio.Event()

            async def server_send(message: Message) -> None:
                if message["type"] == "websocket.send" and message["text"] == "slow":
                    sending.set()
                    await unblock.wait()
                peer.sent.append(message)

            async def app(scope: Any, receive: Any, send: Any) -> None:
                await receive()
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.send", "text": "slow"})
                try:
                    await send({"type": "websocket.send", "text": "after the close"})
                except OSError as exc:
                    outcome.append(type(exc).__name__)
                    raise

            peer = Peer(WS_CONNECT)
            gate = GateMiddleware(app, controller)
            socket = asyncio.create_task(gate(ws_scope("/profiles/1"), peer.receive, server_send))
            await sending.wait()
            switch = asyncio.create_task(controller.set_mode("maintenance"))
            await asyncio.sleep(0.01)
            unblock.set()
            record = await asyncio.wait_for(switch, 1)
            await socket  # the app's error was the gate's doing: not propagated
            return peer, record, controller.gate.total_in_flight

        peer, record, in_flight = run(scenario())
        assert [m["type"] for m in peer.sent] == [
            "websocket.accept",
            "websocket.send",
            "websocket.close",
        ]
        assert peer.sent[2]["code"] == 1012
        assert outcome == ["ClosedForSwitch"]
        assert record.closed == {"profile": 1}
        assert in_flight == 0

    def test_a_handshake_under_way_is_refused_503(self) -> None:
        """A socket admitted but not yet accepted when the drain begins gets 503, not an accept."""

        async def scenario() -> tuple[Peer, Any]:
            controller = await started(ModeController(drain_timeout=5))
            deciding = asyncio.Event()
            decided = asyncio.Event()

            async def app(scope: Any, receive: Any, send: Any) -> None:
                await receive()
                deciding.set()
                await decided.wait()  # e.g. checking credentials
                await send({"type": "websocket.accept"})
                await receive()

            peer = Peer(WS_CONNECT)
            gate = GateMiddleware(app, controller)
            scope = ws_scope("/profiles/1", extensions=DENIAL)
            socket = asyncio.create_task(gate(scope, peer.receive, peer.send))
            await deciding.wait()
            switch = asyncio.create_task(controller.set_mode("maintenance"))
            await asyncio.sleep(0.01)
            decided.set()
            await asyncio.sleep(0.01)
            peer.queue.put_nowait({"type": "websocket.disconnect", "code": 1006})
            await socket
            return peer, await asyncio.wait_for(switch, 1)

        peer, record = run(scenario())
        assert peer.types() == ["websocket.http.response.start", "websocket.http.response.body"]
        assert peer.sent[0]["status"] == 503
        assert (
            "switching from production to maintenance"
            in json.loads(peer.sent[1]["body"])["description"]
        )
        assert record.closed == {"profile": 1}


class FlakyStore(InMemoryStore):
    def load(self) -> Any:
        raise OSError("disk on fire")


STARTUP = {"type": "lifespan.startup"}
SHUTDOWN = {"type": "lifespan.shutdown"}


class TestLifespan:
    def test_lifespan_passes_through_and_starts_the_controller_once(self) -> None:
        """The app sees its lifespan; the controller starts before it and closes after it."""
        order: list[str] = []

        class Tracked(ModeController):
            async def start(self) -> Any:
                order.append("controller start")
                return await super().start()

            async def close(self) -> None:
                order.append("controller close")
                await super().close()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                order.append("request")
                await ok_app(scope, receive, send)
                return
            while True:
                message = await receive()
                order.append(f"app {message['type']}")
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return

        async def scenario() -> Peer:
            gate = GateMiddleware(app, Tracked())
            peer = Peer(STARTUP)
            lifespan = asyncio.create_task(
                gate({"type": "lifespan", "asgi": {"version": "3.0"}}, peer.receive, peer.send)
            )
            await asyncio.sleep(0.01)
            request = Peer(REQUEST)
            await gate(http_scope(path="/server/status"), request.receive, request.send)
            peer.queue.put_nowait(SHUTDOWN)
            await lifespan
            return peer

        peer = run(scenario())
        assert peer.types() == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert order == [
            "controller start",
            "app lifespan.startup",
            "request",
            "app lifespan.shutdown",
            "controller close",
        ]

    def test_companions_start_after_the_controller_and_close_before_it(self) -> None:
        """The fleet's bypass follower lives inside the controller's life, before requests."""
        order: list[str] = []

        class Tracked(ModeController):
            async def start(self) -> Any:
                order.append("controller start")
                return await super().start()

            async def close(self) -> None:
                order.append("controller close")
                await super().close()

        class Companion:
            def __init__(self, name: str) -> None:
                self.name = name

            async def start(self) -> None:
                order.append(f"{self.name} start")

            async def close(self) -> None:
                order.append(f"{self.name} close")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                raise ValueError("no lifespan here")
            order.append("request")
            await ok_app(scope, receive, send)

        async def scenario() -> None:
            gate = GateMiddleware(app, Tracked(), companions=[Companion("a"), Companion("b")])
            request = Peer(REQUEST)  # no lifespan startup: the first request starts them all
            await gate(http_scope(path="/profiles/1"), request.receive, request.send)
            peer = Peer(SHUTDOWN)
            await gate({"type": "lifespan", "asgi": {"version": "3.0"}}, peer.receive, peer.send)

        run(scenario())
        assert order == [
            "controller start",
            "a start",
            "b start",
            "request",
            "b close",
            "a close",
            "controller close",
        ]

    def test_app_without_lifespan_support(self) -> None:
        """An app that rejects the lifespan scope still gets a started controller."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                raise ValueError("no lifespan here")
            await ok_app(scope, receive, send)

        async def scenario() -> tuple[Peer, bool]:
            controller = ModeController(InMemoryStore())
            peer = Peer(STARTUP, SHUTDOWN)
            await GateMiddleware(app, controller)(
                {"type": "lifespan", "asgi": {"version": "3.0"}}, peer.receive, peer.send
            )
            return peer, bool(await controller.history())

        peer, has_history = run(scenario())
        assert peer.types() == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert has_history  # the controller started: the initial mode was recorded

    def test_store_failure_fails_startup(self) -> None:
        """A store that cannot load makes the startup fail with a message, not a traceback."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "lifespan.startup.complete"})

        async def scenario() -> Peer:
            peer = Peer(STARTUP)
            await GateMiddleware(app, ModeController(FlakyStore()))(
                {"type": "lifespan", "asgi": {"version": "3.0"}}, peer.receive, peer.send
            )
            return peer

        peer = run(scenario())
        assert peer.types() == ["lifespan.startup.failed"]
        assert "disk on fire" in peer.sent[0]["message"]

    def test_first_request_starts_the_controller_without_lifespan(self) -> None:
        """With no lifespan at all, concurrent first requests start the controller once."""
        starts = []

        class Counting(ModeController):
            async def start(self) -> Any:
                starts.append(1)
                await asyncio.sleep(0.01)
                return await super().start()

        async def scenario() -> list[int]:
            gate = GateMiddleware(ok_app, Counting())
            peers = [Peer(REQUEST) for _ in range(5)]
            await asyncio.gather(
                *(gate(http_scope(path="/profiles/1"), p.receive, p.send) for p in peers)
            )
            return [p.status for p in peers]

        assert run(scenario()) == [200] * 5
        assert starts == [1]

    def test_request_answers_503_when_the_store_cannot_start(self) -> None:
        """Without lifespan, a store failure at first start answers 503, not 500."""

        async def scenario() -> Peer:
            peer = Peer(REQUEST)
            await GateMiddleware(ok_app, ModeController(FlakyStore()))(
                http_scope(path="/profiles/1"), peer.receive, peer.send
            )
            return peer

        peer = run(scenario())
        assert peer.status == 503
        assert json.loads(peer.body)["code"] == 5033

    def test_other_scope_types_pass_through(self) -> None:
        """Scopes other than http, websocket and lifespan go to the app untouched."""
        seen = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["type"])

        run(GateMiddleware(app, ModeController())({"type": "custom"}, Peer().receive, Peer().send))
        assert seen == ["custom"]
