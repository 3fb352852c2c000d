"""The ``servermode`` command: serve the gated application, or talk to a running service."""

from __future__ import annotations

from .commands import main

__all__ = ["main"]
