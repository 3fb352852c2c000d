"""servermode's version: the installed distribution's, as pip and the OpenAPI document name it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["VERSION"]


def _servermode_version() -> str:
    try:
        return version("servermode")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "0+unknown"


#: The version of the installed servermode distribution.
VERSION = _servermode_version()
