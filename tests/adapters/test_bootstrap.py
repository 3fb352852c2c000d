"""The composition root: which app is gated, with which rules, and clear errors otherwise."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from servermode.adapters.bootstrap import build_service, load_app
from servermode.adapters.cli.settings import Settings, SettingsError
from servermode.adapters.store.factory import MEMORY

from .helpers import serving


def test_app_is_named_like_uvicorn_names_it() -> None:
    """--app module:attr loads that ASGI application and gates it."""
    with serving(app="servermode.adapters.http.demo:app", initial_mode="maintenance") as (
        client,
        _,
    ):
        assert client.get("/profiles/1?delay=0").status_code == 503
        assert client.get("/metadata/profiles/extensions?delay=0").status_code == 200


@pytest.mark.parametrize("spec", ["nowhere:app", "servermode.adapters.http.demo:missing", "noattr"])
def test_bad_app_is_a_settings_error(spec: str) -> None:
    """An app that cannot be imported is reported by name."""
    with pytest.raises(SettingsError, match=spec.split(":")[0]):
        load_app(spec)


def test_rules_file_changes_the_categories(tmp_path: Path) -> None:
    """--rules FILE replaces the preset: here /reports is a maintenance-only schema route."""
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "default": "service",
                "rules": [{"path": "/profiles", "category": "schema"}],
            }
        )
    )
    with serving(rules=str(rules)) as (client, _):
        assert client.get("/profiles/1?delay=0").status_code == 503
        client.post("/server/mode", json={"mode": "maintenance"})
        assert client.get("/profiles/1?delay=0").status_code == 200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "route rules"),
        ('{"default": "service", "rules": [{"path": "/x", "category": "billing"}]}', "billing"),
    ],
)
def test_bad_rules_file_is_a_settings_error(tmp_path: Path, content: str, message: str) -> None:
    """Unreadable or unknown-category rules stop the service before it starts."""
    rules = tmp_path / "rules.json"
    rules.write_text(content)
    with pytest.raises(SettingsError, match=message):
        build_service(Settings(rules=str(rules), state=MEMORY))


def test_missing_rules_file_is_a_settings_error(tmp_path: Path) -> None:
    """A rules file that does not exist is named."""
    with pytest.raises(SettingsError, match="cannot read route rules"):
        build_service(Settings(rules=str(tmp_path / "absent.json"), state=MEMORY))


APP_MODULE = """
async def app(scope, receive, send):
    pass
"""


class TestAppDir:
    """--app imports from the current folder as uvicorn does, or from --app-dir (issue 10)."""

    @pytest.fixture(autouse=True)
    def _restore_imports(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sys, "path", list(sys.path))
        monkeypatch.setattr(sys, "modules", dict(sys.modules))

    def test_the_current_folder_by_default(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A module beside the operator is found, whatever sys.path started with."""
        (tmp_path / "beside_me.py").write_text(APP_MODULE)
        monkeypatch.chdir(tmp_path)
        assert callable(load_app("beside_me:app"))

    def test_an_app_dir(self, tmp_path: Path) -> None:
        """--app-dir DIR is searched first."""
        (tmp_path / "elsewhere.py").write_text(APP_MODULE)
        assert callable(load_app("elsewhere:app", str(tmp_path)))

    def test_a_missing_app_dir_is_named(self, tmp_path: Path) -> None:
        """A folder that does not exist is a settings error naming it."""
        with pytest.raises(SettingsError, match=r"--app-dir .*nowhere: no such folder"):
            load_app("x:app", str(tmp_path / "nowhere"))
