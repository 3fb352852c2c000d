"""Bearer tokens: roles, refusals, and tokens that never show."""

from __future__ import annotations

import pytest
from servermode.adapters.http.auth import Principal, Role, TokenAuth
from servermode.adapters.http.problems import Problem, ProblemError


class TestTokenAuth:
    def test_open_without_tokens(self) -> None:
        """Without tokens everyone is the anonymous principal of the asked role."""
        auth = TokenAuth()
        assert auth.require(None, Role.ADMIN) == Principal("anonymous", Role.ADMIN)
        assert not auth.protects_writes

    def test_admin_token_is_the_admin_principal(self) -> None:
        """The admin token gives the admin principal, for writes and reads."""
        auth = TokenAuth(admin_token="a", read_token="r")
        assert auth.require("Bearer a", Role.ADMIN).name == "admin"
        assert auth.require("bearer a", Role.READER).name == "admin"

    def test_read_token_reads_but_cannot_write(self) -> None:
        """The read token reads; asked to write it is forbidden (403), not unauthorised."""
        auth = TokenAuth(admin_token="a", read_token="r")
        assert auth.require("Bearer r", Role.READER) == Principal("reader", Role.READER)
        with pytest.raises(ProblemError) as refused:
            auth.require("Bearer r", Role.ADMIN)
        assert refused.value.problem is Problem.FORBIDDEN

    @pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer  ", "Basic YTpi", "Bearer ab"])
    def test_missing_or_wrong_credentials_are_401(self, header: str | None) -> None:
        """No header, another scheme or another token is 401 with a Bearer challenge."""
        with pytest.raises(ProblemError) as refused:
            TokenAuth(admin_token="a").require(header, Role.ADMIN)
        assert refused.value.problem is Problem.UNAUTHORIZED
        assert refused.value.headers["WWW-Authenticate"].startswith("Bearer")

    def test_empty_token_is_rejected(self) -> None:
        """A blank token would protect nothing: refused at construction."""
        with pytest.raises(ValueError, match="admin token is empty"):
            TokenAuth(admin_token="  ")

    @pytest.mark.parametrize(
        "token", ["s\u00e9same", "\u5bc6\u7801", "tab\tinside", " padded", "padded ", "nul\x00"]
    )
    def test_a_token_that_could_never_match_is_refused(self, token: str) -> None:
        """Non-ASCII, control characters or spaces around: refused at construction, unshown.

        A header arrives as bytes that servers decode as Latin-1 and strip: such a token could
        never be presented as written (issue 9, item 15: it was accepted and never matched).
        """
        for kwargs in ({"admin_token": token}, {"read_token": token}):
            with pytest.raises(ValueError, match="printable ASCII") as refused:
                TokenAuth(**kwargs)
            assert token.strip() not in str(refused.value)

    def test_tokens_never_show(self) -> None:
        """Neither the repr nor the kept state contain the token."""
        auth = TokenAuth(admin_token="hunter2-secret", read_token="peek-secret")
        shown = repr(auth) + repr([getattr(auth, s) for s in TokenAuth.__slots__])
        assert "hunter2" not in shown and "peek" not in shown


def test_guards_says_which_roles_need_a_token() -> None:
    """guards(role) is True exactly when require(role) would ask for a token."""
    assert not TokenAuth().guards(Role.ADMIN) and not TokenAuth().guards(Role.READER)
    assert TokenAuth("a" * 16).guards(Role.ADMIN) and not TokenAuth("a" * 16).guards(Role.READER)
    assert TokenAuth(read_token="r" * 16).guards(Role.READER)
