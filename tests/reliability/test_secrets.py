"""Auth under attack: missing and wrong tokens, constant-time comparison, tokens never logged."""

from __future__ import annotations

import contextlib
import hmac
import secrets
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
from servermode.adapters.http import auth
from servermode.adapters.http.auth import Role, TokenAuth
from servermode.adapters.http.problems import ProblemError

from .conftest import FIGURES
from .service import ServiceProcess

pytestmark = pytest.mark.timeout(30)


def test_tokens_are_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check compares fixed-length digests with hmac.compare_digest, never with ==."""
    calls: list[tuple[bytes, bytes]] = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    guard = TokenAuth("the-admin-token", "the-read-token")
    for presented in ("x", "the-admin-token", "the-admin-tokem", "t" * 10_000, "the-read-token"):
        with contextlib.suppress(ProblemError):
            guard.require(f"Bearer {presented}", Role.ADMIN)
    # Two comparisons per check (admin and read token), whatever was presented, so neither
    # the time taken nor the number of comparisons depends on how close the token was.
    assert len(calls) == 10
    assert all(len(a) == len(b) == 32 for a, b in calls)
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


def test_auth_and_secrets_of_a_real_service(tmp_path: Path) -> None:
    """Missing, wrong and read-only tokens are refused; no token shows in logs or the audit."""
    admin, read = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    wrong = [admin[:-1] + ("A" if admin[-1] != "A" else "B"), admin + "x", read + "x"]
    env = {"SERVERMODE_ADMIN_TOKEN": admin, "SERVERMODE_READ_TOKEN": read}
    log = tmp_path / "service.log"
    # trace: the chattiest level uvicorn has (it logs every connection and ASGI message).
    args = ("--log-level", "trace", "--demo-delay", "0")
    answers: dict[str, int] = {}
    with ServiceProcess(tmp_path / "servermode.db", log, *args, env=env) as service:
        client = httpx2.Client(base_url=service.url, timeout=10)

        def post(name: str, header: str | None, mode: str = "maintenance") -> None:
            headers = {"Authorization": header} if header is not None else {}
            answer = client.post("/server/mode", json={"mode": mode}, headers=headers)
            answers[name] = answer.status_code
            if answer.status_code >= 400:
                assert answer.json()["code"] in (4010, 4030)

        post("no token", None)
        post("empty bearer", "Bearer")
        post("basic scheme", f"Basic {admin}")
        post("token without scheme", admin)
        for n, token in enumerate(wrong):
            post(f"wrong {n}", f"Bearer {token}")
        post("read token", f"Bearer {read}")
        post("admin token", f"Bearer {admin}")
        post("admin token, lower-case scheme", f"bearer {admin}", "production")
        status_open = client.get("/server/status").status_code
        status_read = client.get("/server/status", headers={"Authorization": f"Bearer {read}"})
        history = client.get(
            "/server/transitions", headers={"Authorization": f"Bearer {admin}"}
        ).text
        client.close()
    FIGURES["requests sent"] += len(answers) + 3
    FIGURES["faults injected"] += sum(status >= 400 for status in answers.values())
    FIGURES["switches made"] += 2

    assert answers == {
        "no token": 401,
        "empty bearer": 401,
        "basic scheme": 401,
        "token without scheme": 401,
        "wrong 0": 401,
        "wrong 1": 401,
        "wrong 2": 401,
        "read token": 403,
        "admin token": 200,
        "admin token, lower-case scheme": 200,
    }
    assert (status_open, status_read.status_code) == (401, 200)
    written = log.read_text()
    assert "mode_transition" in written and "admin_auth_refused" in written
    for secret in (admin, read, *wrong):
        assert secret not in written
        assert secret not in history
        assert secret not in status_read.text
    assert '"actor":"admin"' in history.replace(" ", "")
