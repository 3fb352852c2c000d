"""The dispatch and the classification agree on which requests are servermode's (item 5)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from servermode.adapters.http.classify import CONTEXT_SERVICES_RULES, normalise_path
from servermode.adapters.http.dispatch import AdminDispatch
from servermode.adapters.http.routes import SERVER_CATEGORIES, SERVER_ROUTES
from starlette.types import Message, Receive, Scope, Send


class _Recorder:
    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append(scope["path"])


def _dispatched_to_admin(method: str, path: str) -> bool:
    admin, app = _Recorder(), _Recorder()

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    scope = {"type": "http", "method": method, "path": path}
    asyncio.run(AdminDispatch(admin, app)(scope, receive, send))
    assert len(admin.paths) + len(app.paths) == 1
    return bool(admin.paths)


def _variant(path: str, flips: list[bool], suffix: str) -> str:
    """``path`` with some letters upper-cased and something appended."""
    flips = (flips + [False] * len(path))[: len(path)]
    letters = [c.upper() if flip else c for c, flip in zip(path, flips, strict=True)]
    return "".join(letters) + suffix


_OWNED = st.sampled_from(sorted(SERVER_ROUTES))
_SUFFIXES = st.sampled_from(["", "", "/", "/.", "/..", "//", "/x", "x", "/../mode", ".json"])
_PATHS = st.one_of(
    st.builds(_variant, _OWNED, st.lists(st.booleans(), max_size=12), _SUFFIXES),
    st.builds(lambda p, s: "/a/.." + p + s, _OWNED, _SUFFIXES),
    st.sampled_from(["/health/live", "/openapi.json", "/docs", "/server", "/server/"]),
)


@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from(["GET", "POST", "post", "HEAD", "PUT"]), raw=_PATHS)
def test_a_request_is_served_by_servermode_exactly_when_classified_as_its_own(
    method: str, raw: str
) -> None:
    """Same (normal-form) path, same answer: admin routes <=> an admin or server category.

    The preset never gives an application path one of those categories, so the category alone
    says which side classified it.
    """
    path = normalise_path(raw)
    category = CONTEXT_SERVICES_RULES.classify(method, path)
    assert _dispatched_to_admin(method, path) == (category in SERVER_CATEGORIES)
    assert (category in SERVER_CATEGORIES) == (path in SERVER_ROUTES)
