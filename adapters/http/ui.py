"""``GET /server/ui``: the admin page, three static files shipped in the package.

``static/index.html``, ``static/style.css`` and ``static/app.js`` are served as they are,
except that the page gets the state diagram (:mod:`.statechart`) in place of its
``<!-- diagram -->`` marker.
No build step, nothing from elsewhere: the Content-Security-Policy allows this origin only.
The page holds no data and needs no token; it asks for one and sends it with every call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

from .routes import UI_PATH, UI_SCRIPT_PATH, UI_STYLE_PATH
from .statechart import render_svg

__all__ = ["PAGE_PATH", "UI_FILES", "UiAssets"]

PAGE_PATH = UI_PATH
DIAGRAM_MARKER = "<!-- diagram -->"

#: URL path -> (file in the package's static/ folder, media type).
UI_FILES: dict[str, tuple[str, str]] = {
    UI_PATH: ("index.html", "text/html; charset=utf-8"),
    UI_STYLE_PATH: ("style.css", "text/css; charset=utf-8"),
    UI_SCRIPT_PATH: ("app.js", "text/javascript; charset=utf-8"),
}

HEADERS = {
    # The page revalidates its files (small) so that an upgrade shows at the next load.
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    media_type: str


class UiAssets:
    """The page's files, read from the package once, and the endpoint that serves them."""

    def __init__(self) -> None:
        folder = resources.files(__package__ or "servermode.adapters.http") / "static"
        assets: dict[str, _Asset] = {}
        for path, (name, media_type) in UI_FILES.items():
            text = (folder / name).read_text(encoding="utf-8")
            if name == "index.html":
                if DIAGRAM_MARKER not in text:
                    raise RuntimeError(f"static/index.html lacks the {DIAGRAM_MARKER} marker")
                text = text.replace(DIAGRAM_MARKER, render_svg())
            assets[path] = _Asset(text.encode("utf-8"), media_type)
        self._assets = assets

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(self._assets)

    def endpoint(self, path: str) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint that serves the file of ``path`` (one of :attr:`paths`)."""
        asset = self._assets[path]

        async def serve(request: Request) -> Response:
            return Response(asset.body, media_type=asset.media_type, headers=HEADERS)

        return serve
