"""A small HTTP client of a running servermode service, for the CLI (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

__all__ = ["ServiceClient", "ServiceError"]


class ServiceError(Exception):
    """The service answered with an error body, or could not be reached."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        self.status = status
        self.body = body
        super().__init__(message)


class ServiceClient:
    """JSON over HTTP to ``base_url``, with ``Authorization: Bearer <token>`` when given."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def with_timeout(self, timeout: float) -> ServiceClient:
        """The same client, with another timeout."""
        return ServiceClient(self.base_url, self._token, timeout)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        return self._call(urllib.request.Request(url, method="GET"), self.timeout)[0]

    def post_json(
        self,
        path: str,
        body: Any,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Any, Mapping[str, str]]:
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        return self._call(request, timeout if timeout is not None else self.timeout)

    def _call(self, request: urllib.request.Request, timeout: float) -> tuple[Any, Any]:
        request.add_header("Accept", "application/json")
        if self._token is not None:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return _json(response.read()), response.headers
        except urllib.error.HTTPError as error:
            body = _json(error.read())
            raise ServiceError(_describe(error.code, body), error.code, body) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ServiceError(f"cannot reach servermode at {self.base_url}: {reason}") from None


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode(errors="replace")


def _describe(status: int, body: Any) -> str:
    if isinstance(body, dict) and "description" in body:
        return f"{status} {body.get('title', '')}: {body['description']}"
    return f"{status}: {body}"
