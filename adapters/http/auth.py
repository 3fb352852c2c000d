"""Bearer tokens for the admin routes: an admin token to change mode, an optional read token.

Only SHA-256 digests of the tokens are kept, and they are compared with
:func:`hmac.compare_digest`: the comparison takes the same time whatever the presented token,
its length included. A token never appears in a repr, a log line or an error body.

A token must be printable ASCII without whitespace around it, and one that is not is refused
when :class:`TokenAuth` is built (so at start): HTTP header values are bytes that servers decode
as Latin-1 and strip, so a token with other characters, or spaces around it, could never be
presented as written and would lock everyone out without a word.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from .problems import Problem, ProblemError

__all__ = ["Principal", "Role", "TokenAuth"]


class Role(StrEnum):
    ADMIN = "admin"  # may change the mode (and read)
    READER = "reader"  # may read status and history


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request, as recorded in the audit: a token's role, or anonymous."""

    name: str
    role: Role


def _unauthorized(description: str) -> ProblemError:
    return ProblemError(
        Problem.UNAUTHORIZED, description, {"WWW-Authenticate": 'Bearer realm="servermode"'}
    )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenAuth:
    """Checks ``Authorization: Bearer <token>`` headers.

    Parameters:
        admin_token: needed to change the mode; None leaves the mode switch open.
        read_token: needed (or the admin token) to read status and history; None leaves
            them open. Health probes and the API description are always open.
    """

    __slots__ = ("_admin", "_read")

    def __init__(self, admin_token: str | None = None, read_token: str | None = None) -> None:
        for name, token in (("admin", admin_token), ("read", read_token)):
            if token is None:
                continue
            if not token.strip():
                raise ValueError(f"the {name} token is empty")
            if not (token.isascii() and token.isprintable()) or token != token.strip():
                # The message never shows the token, not even the offending character.
                raise ValueError(
                    f"the {name} token must be printable ASCII without spaces around it: "
                    f"a client sends it in an HTTP header, where other characters do not "
                    f"arrive as written, so it could never match"
                )
        self._admin = _digest(admin_token) if admin_token is not None else None
        self._read = _digest(read_token) if read_token is not None else None

    @property
    def protects_writes(self) -> bool:
        return self._admin is not None

    def guards(self, role: Role) -> bool:
        """Whether acting as ``role`` needs a token (else :meth:`require` lets anyone in)."""
        return (self._admin if role is Role.ADMIN else self._read) is not None

    def require(self, authorization: str | None, role: Role) -> Principal:
        """The principal behind ``authorization`` if it may act as ``role``.

        Raises ProblemError: 401 without a valid token, 403 for the read token asked to act as
        admin.
        """
        guard = self._admin if role is Role.ADMIN else self._read
        if guard is None:
            return Principal("anonymous", role)
        presented = _bearer(authorization)
        if presented is None:
            raise _unauthorized("missing bearer token (Authorization header)")
        digest = _digest(presented)
        # Both comparisons always run, so timing does not tell which token was close.
        is_admin = self._admin is not None and hmac.compare_digest(digest, self._admin)
        is_reader = self._read is not None and hmac.compare_digest(digest, self._read)
        if is_admin:
            return Principal(Role.ADMIN.value, Role.ADMIN)
        if is_reader and role is Role.READER:
            return Principal(Role.READER.value, Role.READER)
        if is_reader:
            raise ProblemError(Problem.FORBIDDEN, "the read token does not allow changing the mode")
        raise _unauthorized("invalid bearer token")

    def __repr__(self) -> str:
        return f"TokenAuth(admin={self._admin is not None}, read={self._read is not None})"


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
