"""serve's settings with click: flag > SERVERMODE_* variable > config file > default, and
where each value came from (issue 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from servermode.adapters.cli.commands import main
from servermode.adapters.cli.options import resolve_serve
from servermode.adapters.cli.settings import SettingsError

FILE = """
default_category = "orders"
[categories.orders]
admitted_in = ["production"]
[categories.migrations]
admitted_in = ["maintenance"]
[[routes]]
path = "/admin/migrations"
category = "migrations"

[serve]
port = 9001
drain_timeout = 5
retry_after = 30
log_level = "debug"
admin_token_file = "admin.token"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "admin.token").write_text("from-the-file\n")
    path = tmp_path / "servermode.toml"
    path.write_text(FILE)
    return path


def test_each_layer_wins_over_the_next(config: Path) -> None:
    """A flag beats its variable, which beats the file, which beats the default."""
    env = {"SERVERMODE_DRAIN_TIMEOUT": "7", "SERVERMODE_PORT": "9002"}
    resolved = resolve_serve(["--config", str(config), "--port", "9100"], env)
    settings, sources = resolved.settings, resolved.sources
    assert (settings.port, sources["port"]) == (9100, "flag --port")
    assert (settings.drain_timeout, sources["drain_timeout"]) == (
        7.0,
        "env SERVERMODE_DRAIN_TIMEOUT",
    )
    assert (settings.retry_after, sources["retry_after"]) == (30, f"config {config}")
    assert (settings.host, sources["host"]) == ("127.0.0.1", "default")
    assert sources["config"] == "flag --config"


def test_the_config_file_from_the_environment(config: Path) -> None:
    """SERVERMODE_CONFIG names the file when --config does not."""
    resolved = resolve_serve([], {"SERVERMODE_CONFIG": str(config)})
    assert resolved.settings.port == 9001
    assert resolved.sources["config"] == "env SERVERMODE_CONFIG"
    assert resolved.policy_source == f"config {config}"
    assert resolved.rules().classify("POST", "/admin/migrations/1") == "migrations"


def test_tokens_keep_the_precedence(config: Path, tmp_path: Path) -> None:
    """A token file named by the file is read (relative to the file's folder), unless the
    token's own variable is set; a token file named by a flag beats both."""
    resolved = resolve_serve(["--config", str(config)], {})
    assert resolved.settings.admin_token == "from-the-file"
    resolved = resolve_serve(["--config", str(config)], {"SERVERMODE_ADMIN_TOKEN": "env-token"})
    assert resolved.settings.admin_token == "env-token"
    assert resolved.sources["admin_token"] == "env SERVERMODE_ADMIN_TOKEN"
    flagged = tmp_path / "flagged"
    flagged.write_text("flag-token")
    resolved = resolve_serve(
        ["--config", str(config), "--admin-token-file", str(flagged)],
        {"SERVERMODE_ADMIN_TOKEN": "env-token"},
    )
    assert resolved.settings.admin_token == "flag-token"
    assert resolved.sources["admin_token"] == f"file {flagged} (flag --admin-token-file)"


def test_without_a_file_the_preset(tmp_path: Path) -> None:
    """No config file: the Context Services policy and rules."""
    resolved = resolve_serve([], {})
    assert resolved.config is None
    assert resolved.policy_source == resolved.rules_source == "built in: Context Services"


def test_a_bad_file_is_a_settings_error_naming_it(tmp_path: Path) -> None:
    """A bad config file stops before anything else, naming the file and the key."""
    path = tmp_path / "bad.toml"
    path.write_text("[serve]\ndrain_timeout = 1e9\n")
    with pytest.raises(SettingsError) as raised:
        resolve_serve(["--config", str(path)], {})
    assert str(raised.value) == (
        f"config {path}: serve.drain_timeout: expected a number between 0 and 604800 seconds, "
        "not 1000000000.0"
    )


def test_help_shows_variables_defaults_and_bounds() -> None:
    """--help is click's: each option with its variable, its default and its range."""
    result = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines() if "--" in line}
    assert "[env var: SERVERMODE_PORT; default: 8080; 0<=x<=65535]" in lines["--port"]
    assert "SERVERMODE_CONFIG" in lines["--config"]
    assert "[force|rollback]" in lines["--timeout-policy"]


class TestConfigCommand:
    """`servermode config` prints the effective settings, policy and rules, and their sources."""

    def test_text(self, config: Path) -> None:
        result = CliRunner().invoke(
            main,
            ["config", "--config", str(config), "--port", "9100"],
            env={"SERVERMODE_DRAIN_TIMEOUT": "7", "SERVERMODE_ADMIN_TOKEN": None},
            terminal_width=200,
        )
        assert result.exit_code == 0, result.output
        rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line}
        assert rows["port"] == ["port", "9100", "flag", "--port"]
        assert rows["drain_timeout"] == ["drain_timeout", "7.0", "env", "SERVERMODE_DRAIN_TIMEOUT"]
        assert rows["retry_after"] == ["retry_after", "30", "config", str(config)]
        assert rows["admin_token"][:3] == ["admin_token", "********", "file"]
        assert "from-the-file" not in result.output
        assert rows["orders"] == ["orders", "yes", "-", "-", "-", "yes"]
        assert rows["migrations"] == ["migrations", "-", "-", "yes", "-", "yes"]
        assert rows["admin"][-3:] == ["no", "(servermode's", "own)"]
        lines = result.output.splitlines()
        routes = lines[lines.index(f"ROUTES (config {config}): the first that matches decides") :]
        assert [line.split() for line in routes[1:4]] == [
            ["METHODS", "PATH", "CATEGORY"],
            ["*", "/admin/migrations", "migrations"],
            ["*", "anything", "else", "orders", "(the", "default)"],
        ]
        assert f"CATEGORIES (config {config})" in result.output

    def test_json_masks_the_tokens(self, config: Path) -> None:
        result = CliRunner().invoke(
            main,
            ["config", "--config", str(config), "--json"],
            env={"SERVERMODE_READ_TOKEN": "peek-secret", "SERVERMODE_ADMIN_TOKEN": None},
        )
        assert result.exit_code == 0, result.output
        assert "peek-secret" not in result.output and "from-the-file" not in result.output
        report = json.loads(result.output)
        settings = {entry["name"]: entry for entry in report["settings"]}
        assert settings["read_token"] == {
            "name": "read_token",
            "value": "********",
            "from": "env SERVERMODE_READ_TOKEN",
        }
        assert settings["admin_token_file"]["value"] == str(config.parent / "admin.token")
        assert report["routes"]["default_category"] == "orders"
        assert [c["name"] for c in report["categories"]["categories"]] == [
            "orders",
            "migrations",
            "admin",
            "server",
        ]

    def test_a_bad_file_is_one_error_line(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.toml"
        path.write_text('default_category = "x"\n[[routes]]\npath = "/a"\ncategroy = "x"\n')
        result = CliRunner().invoke(main, ["config", "--config", str(path)])
        assert result.exit_code == 1
        assert result.output == f"Error: config {path}: routes[1].categroy: unknown key, " + (
            "expected methods, path, category\n"
        )
