"""Issue 12's settings through the layers of issue 10: flags, variables and the config file."""

from __future__ import annotations

from pathlib import Path

import pytest
from servermode.adapters.cli.options import resolve_serve
from servermode.adapters.cli.settings import SettingsError

FILE = """
[serve]
lame_duck = 5
maintenance_page = "page.html"
bypass_secret_file = "bypass.secret"
bypass_allow = "10.0.0.0/8"
trusted_proxies = "192.0.2.1"
webhooks = "http://127.0.0.1:9000/hook"
webhook_secret_file = "webhook.secret"
"""


def test_the_config_file_names_the_secret_files_and_flags_win(tmp_path: Path) -> None:
    (tmp_path / "bypass.secret").write_text("b" * 20 + "\n")
    (tmp_path / "webhook.secret").write_text("w" * 20 + "\n")
    config = tmp_path / "servermode.toml"
    config.write_text(FILE)
    resolved = resolve_serve(["--config", str(config), "--lame-duck", "2"], environ={})
    settings = resolved.settings
    assert settings.lame_duck == 2.0
    assert resolved.sources["lame_duck"] == "flag --lame-duck"
    assert settings.maintenance_page == str(tmp_path / "page.html")  # from the file's folder
    assert settings.bypass_secret == "b" * 20
    assert settings.webhook_secret == "w" * 20
    assert settings.bypass_allow == "10.0.0.0/8"
    assert settings.trusted_proxies == "192.0.2.1"
    assert settings.webhooks == "http://127.0.0.1:9000/hook"
    assert "b" * 20 not in repr(settings)
    from_env = resolve_serve(
        ["--config", str(config)], environ={"SERVERMODE_BYPASS_SECRET": "e" * 20}
    )
    assert from_env.settings.bypass_secret == "e" * 20
    assert from_env.settings.lame_duck == 5.0


def test_a_secret_in_the_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "servermode.toml"
    config.write_text('[serve]\nbypass_secret = "written-in-a-shared-file"\n')
    with pytest.raises(SettingsError, match="bypass_secret: unknown"):
        resolve_serve(["--config", str(config)], environ={})


@pytest.mark.parametrize("value", ["-1", "3601", "nan", "inf"])
def test_the_lame_duck_is_bounded(value: str) -> None:
    with pytest.raises(SettingsError, match="lame duck"):
        resolve_serve(["--lame-duck", value], environ={})
