"""Applications as ``module:attr``, for servers that take an app rather than a factory.

``uvicorn bench.served:app`` and ``servermode serve --app bench.served:app`` serve the same
trivial Starlette app as :func:`.apps.bare_app` (one plain-text route under ``/profiles``).
"""

from __future__ import annotations

from .apps import bare_app

app = bare_app()
