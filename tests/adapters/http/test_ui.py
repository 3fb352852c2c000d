"""The admin page's files and its state diagram, in process (tests/browser runs it for real)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from importlib import resources

import pytest
from servermode.adapters.http.statechart import POSITIONS, render_svg
from servermode.adapters.http.ui import UI_FILES
from servermode.core import TRANSITIONS, State

from ..helpers import serving

SVG = "{http://www.w3.org/2000/svg}"


class TestDiagram:
    def test_every_state_and_every_row_of_the_table_is_drawn(self) -> None:
        """Boxes are the states, arrows the table's (source, dest) pairs, labels its triggers."""
        root = ET.fromstring(render_svg())  # well-formed XML
        boxes = {g.get("data-state") for g in root.iter(f"{SVG}g") if g.get("class") == "sm-state"}
        assert boxes == {state.value for state in State}
        arrows = {
            (g.get("data-from"), g.get("data-to")): "\n".join(g.itertext())
            for g in root.iter(f"{SVG}g")
            if g.get("class") == "sm-edge"
        }
        assert set(arrows) == {(t.source.value, t.dest.value) for t in TRANSITIONS}
        for t in TRANSITIONS:
            label = t.trigger.value + (f" [{t.only_under.value}]" if t.only_under else "")
            assert label in arrows[(t.source.value, t.dest.value)].split("\n")

    def test_every_state_has_a_place(self) -> None:
        assert set(POSITIONS) == set(State)

    def test_drawing_stays_inside_its_view_box(self) -> None:
        root = ET.fromstring(render_svg())
        _, _, width, height = (float(v) for v in root.get("viewBox", "").split())
        for element in root.iter():
            for name in ("x", "x1", "x2", "y", "y1", "y2"):
                value = element.get(name)
                if value is not None:
                    limit = width if name.startswith("x") else height
                    assert 0 <= float(value) <= limit, (element.tag, name, value)


class TestPage:
    def test_served_without_a_token_with_the_diagram_and_a_strict_policy(self) -> None:
        """The page is static: no token needed (it asks for one); only this origin may load."""
        with serving(admin_token="a-secret", read_token="r-secret") as (client, _):
            page = client.get("/server/ui")
            files = {path: client.get(path) for path in UI_FILES}
            slash = client.get("/server/ui/", follow_redirects=False)
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert 'class="statechart"' in page.text and "<!-- diagram -->" not in page.text
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "unsafe" not in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        for path, (_, media_type) in UI_FILES.items():
            assert files[path].status_code == 200, path
            assert files[path].headers["content-type"] == media_type
        # servermode owns exact paths: with a trailing slash it is the app's (the demo has none).
        assert slash.status_code == 404

    def test_nothing_is_loaded_from_elsewhere(self) -> None:
        """No CDN, no font service: every URL in the files is relative to this server."""
        folder = resources.files("servermode.adapters.http") / "static"
        for name in ("index.html", "style.css", "app.js"):
            text = (folder / name).read_text(encoding="utf-8")
            assert re.findall(r"(?:https?:)?//[\w.-]+", text) == [], name

    @pytest.mark.parametrize("path", list(UI_FILES))
    def test_the_files_are_package_data(self, path: str) -> None:
        name = UI_FILES[path][0]
        assert (resources.files("servermode.adapters.http") / "static" / name).is_file()
