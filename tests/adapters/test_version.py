"""One version everywhere: the installed package's (issue 10)."""

from __future__ import annotations

from importlib.metadata import version

from servermode.adapters.http.openapi import OPENAPI
from servermode.adapters.http.status import VERSION as STATUS_VERSION
from servermode.adapters.version import VERSION


def test_the_openapi_document_and_the_status_carry_the_package_version() -> None:
    """info.version of /server/openapi.json and the status's version are the package's."""
    assert version("servermode") == VERSION
    assert OPENAPI["info"]["version"] == VERSION
    assert STATUS_VERSION == VERSION
