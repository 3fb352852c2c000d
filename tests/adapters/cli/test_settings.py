"""Settings: defaults, SERVERMODE_* variables, flags, token files, and the exposure check."""

from __future__ import annotations

from pathlib import Path

import pytest
from servermode.adapters.cli.settings import (
    Settings,
    SettingsError,
    check_exposure,
    is_loopback,
    load_settings,
)


class TestPrecedence:
    def test_defaults(self) -> None:
        """With nothing set the service listens on loopback port 8080, in memory."""
        settings = load_settings({})
        assert (settings.host, settings.port, settings.state) == (
            "127.0.0.1",
            8080,
            "var/servermode.db",
        )
        assert settings.drain_timeout == 60.0 and settings.timeout_policy == "force"

    def test_environment_overrides_defaults_and_flags_override_both(self) -> None:
        """SERVERMODE_* variables beat defaults; flags that are given beat variables."""
        env = {
            "SERVERMODE_PORT": "9000",
            "SERVERMODE_DRAIN_TIMEOUT": "2.5",
            "SERVERMODE_TIMEOUT_POLICY": "rollback",
            "SERVERMODE_INSECURE": "yes",
        }
        settings = load_settings(env, port=9100, drain_timeout=None)
        assert settings.port == 9100
        assert settings.drain_timeout == 2.5
        assert settings.timeout_policy == "rollback"
        assert settings.insecure is True

    def test_initial_mode_is_normalised(self) -> None:
        """The initial mode is read case-insensitively."""
        assert load_settings({"SERVERMODE_INITIAL_MODE": "Maintenance"}).initial_mode == (
            "maintenance"
        )


class TestTokens:
    def test_token_from_environment(self) -> None:
        """SERVERMODE_ADMIN_TOKEN gives the admin token, which stays out of the repr."""
        settings = load_settings({"SERVERMODE_ADMIN_TOKEN": "t0ken"})
        assert settings.admin_token == "t0ken"
        assert "t0ken" not in repr(settings)

    def test_token_file_wins(self, tmp_path: Path) -> None:
        """A token file (flag or variable) is read and stripped, and wins over the variable."""
        admin = tmp_path / "admin"
        admin.write_text("from-file\n")
        reader = tmp_path / "read"
        reader.write_text("  peek ")
        env = {"SERVERMODE_ADMIN_TOKEN": "from-env", "SERVERMODE_READ_TOKEN_FILE": str(reader)}
        settings = load_settings(env, admin_token_file=str(admin))
        assert (settings.admin_token, settings.read_token) == ("from-file", "peek")

    @pytest.mark.parametrize("content", ["", "  \n"])
    def test_empty_token_file_is_an_error(self, tmp_path: Path, content: str) -> None:
        """An empty token file is refused rather than protecting nothing."""
        path = tmp_path / "t"
        path.write_text(content)
        with pytest.raises(SettingsError, match="is empty"):
            load_settings({}, admin_token_file=str(path))

    def test_missing_token_file_is_an_error(self, tmp_path: Path) -> None:
        """A token file that cannot be read is named in the error."""
        with pytest.raises(SettingsError, match="cannot read token file"):
            load_settings({}, admin_token_file=str(tmp_path / "absent"))


class TestValidation:
    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"SERVERMODE_PORT": "eighty"}, "SERVERMODE_PORT"),
            ({"SERVERMODE_PORT": "70000"}, "port must be between"),
            ({"SERVERMODE_DRAIN_TIMEOUT": "-1"}, "drain timeout"),
            ({"SERVERMODE_TIMEOUT_POLICY": "panic"}, "timeout policy"),
            ({"SERVERMODE_INITIAL_MODE": "holiday"}, "initial mode"),
            ({"SERVERMODE_RETRY_AFTER": "0"}, "retry-after"),
            ({"SERVERMODE_LOG_FORMAT": "xml"}, "log format"),
            ({"SERVERMODE_INSECURE": "maybe"}, "SERVERMODE_INSECURE"),
            ({"SERVERMODE_ADMIN_TOKEN": " "}, "SERVERMODE_ADMIN_TOKEN is set but empty"),
        ],
    )
    def test_bad_values_are_named(self, env: dict[str, str], message: str) -> None:
        """A bad value is refused with a message naming the setting."""
        with pytest.raises(SettingsError, match=message):
            load_settings(env)


class TestExposure:
    @pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "::1", "[::1]", "localhost"])
    def test_loopback_hosts(self, host: str) -> None:
        """Loopback addresses and localhost are loopback."""
        assert is_loopback(host)

    @pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.1", "example.internal"])
    def test_other_hosts(self, host: str) -> None:
        """Wildcards, other addresses and host names are not."""
        assert not is_loopback(host)

    def test_public_bind_without_token_is_refused(self) -> None:
        """Binding beyond loopback without an admin token is refused with a clear message."""
        with pytest.raises(SettingsError, match="not a loopback address, without an admin token"):
            check_exposure(Settings(host="0.0.0.0"))

    def test_public_bind_with_token_or_insecure_is_allowed(self) -> None:
        """An admin token, or an explicit --insecure, allows it."""
        check_exposure(Settings(host="0.0.0.0", admin_token="t"))
        check_exposure(Settings(host="0.0.0.0", insecure=True))
