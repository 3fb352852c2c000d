"""Settings: defaults, SERVERMODE_* variables, flags, token files, and the exposure check.

The settings are read as ``servermode serve`` reads them (click options, :mod:`.options`):
``settings_of(env, *args)`` is what ``SERVERMODE_*=... servermode serve ARGS`` would run with.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from servermode.adapters.cli.options import resolve_serve
from servermode.adapters.cli.settings import (
    MAX_DEMO_DELAY,
    MAX_DRAIN_TIMEOUT,
    NUMBERS,
    Settings,
    SettingsError,
    check_exposure,
    check_settings,
    is_loopback,
    parse_forwarded_allow_ips,
)
from servermode.adapters.http.demo import MAX_DELAY


def settings_of(env: dict[str, str], *args: str) -> Settings:
    return resolve_serve(args, env).settings


class TestPrecedence:
    def test_defaults(self) -> None:
        """With nothing set the service listens on loopback port 8080, in memory."""
        settings = settings_of({})
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
        settings = settings_of(env, "--port", "9100")
        assert settings.port == 9100
        assert settings.drain_timeout == 2.5
        assert settings.timeout_policy == "rollback"
        assert settings.insecure is True

    def test_access_log_is_on_by_default_and_its_own_switch(self, tmp_path: Path) -> None:
        """--no-access-log, SERVERMODE_ACCESS_LOG and the config file's access_log turn the
        access log off (or on), with the usual precedence."""
        assert settings_of({}).access_log is True
        assert settings_of({}, "--no-access-log").access_log is False
        assert settings_of({"SERVERMODE_ACCESS_LOG": "false"}).access_log is False
        assert settings_of({"SERVERMODE_ACCESS_LOG": "0"}, "--access-log").access_log is True
        config = tmp_path / "servermode.toml"
        config.write_text("[serve]\naccess_log = false\n")
        assert settings_of({}, "--config", str(config)).access_log is False
        assert settings_of({"SERVERMODE_ACCESS_LOG": "on"}, "--config", str(config)).access_log
        with pytest.raises(SettingsError, match="access"):
            settings_of({"SERVERMODE_ACCESS_LOG": "sometimes"})

    def test_initial_mode_is_normalised(self) -> None:
        """The initial mode is read case-insensitively."""
        assert settings_of({"SERVERMODE_INITIAL_MODE": "Maintenance"}).initial_mode == (
            "maintenance"
        )


class TestTokens:
    def test_token_from_environment(self) -> None:
        """SERVERMODE_ADMIN_TOKEN gives the admin token, which stays out of the repr."""
        settings = settings_of({"SERVERMODE_ADMIN_TOKEN": "t0ken"})
        assert settings.admin_token == "t0ken"
        assert "t0ken" not in repr(settings)

    def test_token_file_wins(self, tmp_path: Path) -> None:
        """A token file (flag or variable) is read and stripped, and wins over the variable."""
        admin = tmp_path / "admin"
        admin.write_text("from-file\n")
        reader = tmp_path / "read"
        reader.write_text("  peek ")
        env = {"SERVERMODE_ADMIN_TOKEN": "from-env", "SERVERMODE_READ_TOKEN_FILE": str(reader)}
        settings = settings_of(env, "--admin-token-file", str(admin))
        assert (settings.admin_token, settings.read_token) == ("from-file", "peek")

    @pytest.mark.parametrize("content", ["", "  \n"])
    def test_empty_token_file_is_an_error(self, tmp_path: Path, content: str) -> None:
        """An empty token file is refused rather than protecting nothing."""
        path = tmp_path / "t"
        path.write_text(content)
        with pytest.raises(SettingsError, match="is empty"):
            settings_of({}, "--admin-token-file", str(path))

    def test_missing_token_file_is_an_error(self, tmp_path: Path) -> None:
        """A token file that cannot be read is named in the error."""
        with pytest.raises(SettingsError, match="cannot read token file"):
            settings_of({}, "--admin-token-file", str(tmp_path / "absent"))


class TestValidation:
    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"SERVERMODE_PORT": "eighty"}, "SERVERMODE_PORT"),
            ({"SERVERMODE_PORT": "70000"}, "port must be between"),
            ({"SERVERMODE_DRAIN_TIMEOUT": "-1"}, "drain timeout"),
            ({"SERVERMODE_TIMEOUT_POLICY": "panic"}, "SERVERMODE_TIMEOUT_POLICY.*'panic' is not"),
            ({"SERVERMODE_INITIAL_MODE": "holiday"}, "SERVERMODE_INITIAL_MODE.*'holiday' is not"),
            ({"SERVERMODE_RETRY_AFTER": "0"}, "retry-after"),
            ({"SERVERMODE_LOG_FORMAT": "xml"}, "SERVERMODE_LOG_FORMAT.*'xml' is not one of"),
            ({"SERVERMODE_INSECURE": "maybe"}, "SERVERMODE_INSECURE"),
            ({"SERVERMODE_ADMIN_TOKEN": " "}, "SERVERMODE_ADMIN_TOKEN is set but empty"),
        ],
    )
    def test_bad_values_are_named(self, env: dict[str, str], message: str) -> None:
        """A bad value is refused with a message naming the setting."""
        with pytest.raises(SettingsError, match=message):
            settings_of(env)


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


class TestNumbers:
    """Every number is bounded when read: a value that parses but cannot be served is refused."""

    @pytest.mark.parametrize(
        ("name", "value", "message"),
        [
            ("drain_timeout", "inf", "drain timeout must be between 0 and 604800 seconds, not inf"),
            ("drain_timeout", "-inf", "drain timeout must be between"),
            ("drain_timeout", "nan", "drain timeout must be between 0 and 604800 seconds, not nan"),
            ("drain_timeout", "1e12", "drain timeout must be between"),
            ("drain_timeout", "604800.5", "drain timeout must be between"),
            ("drain_timeout", "soon", "drain timeout must be a number, not 'soon'"),
            ("port", "-1", "port must be between 0 and 65535, not -1"),
            ("port", "8080.5", "port must be a whole number"),
            ("retry_after", "0", "retry-after must be between 1 and 604800 seconds"),
            ("retry_after", "604801", "retry-after must be between"),
            ("body_timeout", "0", "body timeout must be more than 0 and at most 3600 seconds"),
            ("body_timeout", "nan", "body timeout must be more than 0"),
            ("body_timeout", "1e999", "body timeout must be more than 0"),
            ("demo_delay", "-0.5", "demo delay must be between 0 and 60 seconds"),
            ("demo_delay", "61", "demo delay must be between 0 and 60 seconds"),
            ("workers", "0", "workers must be between 1 and 1024"),
            ("workers", "two", "workers must be a whole number"),
        ],
    )
    def test_an_unservable_value_from_the_environment(
        self, name: str, value: str, message: str
    ) -> None:
        variable = "SERVERMODE_" + name.upper()
        with pytest.raises(SettingsError) as error:
            settings_of({variable: value})
        assert f"(env var: '{variable}'): {message}" in str(error.value)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("drain_timeout", float("inf")),
            ("drain_timeout", float("nan")),
            ("drain_timeout", 1e12),
            ("port", 70000),
            ("retry_after", 10**9),
            ("body_timeout", float("inf")),
            ("demo_delay", 61.0),
        ],
    )
    def test_an_unservable_value_given_directly(self, name: str, value: float) -> None:
        """Values given as flags (already numbers) are bounded the same way."""
        with pytest.raises(SettingsError, match=NUMBERS[name].label):
            check_settings(Settings(**{name: value}))

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("drain_timeout", "0"),
            ("drain_timeout", "604800"),
            ("port", "0"),
            ("port", "65535"),
            ("retry_after", "1"),
            ("retry_after", "604800"),
            ("body_timeout", "0.001"),
            ("body_timeout", "3600"),
            ("demo_delay", "0"),
            ("demo_delay", "60"),
            ("workers", "1"),
        ],
    )
    def test_the_bounds_themselves_are_accepted(self, name: str, value: str) -> None:
        settings = settings_of({"SERVERMODE_" + name.upper(): value})
        assert getattr(settings, name) == NUMBERS[name].kind(value)

    def test_the_longest_drain_is_a_week(self) -> None:
        assert MAX_DRAIN_TIMEOUT == 7 * 24 * 3600

    def test_the_demo_delay_bound_is_the_demos_own(self) -> None:
        """A copy (the CLI's settings do not import the web stack) that must not drift."""
        assert MAX_DEMO_DELAY == MAX_DELAY


class TestWorkers:
    def test_one_worker_by_default(self) -> None:
        assert settings_of({}).workers == 1

    @pytest.mark.parametrize("how", ["environment", "flag"])
    def test_more_than_one_is_refused_pointing_at_fleet_mode(self, how: str) -> None:
        """Each worker would keep its own gate on one state file: refused until fleet mode."""
        with pytest.raises(SettingsError) as error:
            if how == "environment":
                settings_of({"SERVERMODE_WORKERS": "4"})
            else:
                settings_of({}, "--workers", "4")
        message = str(error.value)
        assert "workers must be 1, not 4" in message
        assert "own gate" in message and "fleet mode" in message


class TestForwardedAllowIps:
    def test_off_by_default(self) -> None:
        """No proxy is trusted unless listed: the client is the peer of the connection."""
        assert settings_of({}).forwarded_allow_ips is None

    @pytest.mark.parametrize(
        ("value", "read"),
        [
            ("127.0.0.1", "127.0.0.1"),
            (" 127.0.0.1 , ::1 ", "127.0.0.1,::1"),
            ("10.0.0.0/8,192.168.1.7", "10.0.0.0/8,192.168.1.7"),
            ("*", "*"),
            ("", None),
            (" , ", None),
        ],
    )
    def test_addresses_and_networks(self, value: str, read: str | None) -> None:
        assert settings_of({"SERVERMODE_FORWARDED_ALLOW_IPS": value}).forwarded_allow_ips == (read)
        assert parse_forwarded_allow_ips(value) == read

    @pytest.mark.parametrize("value", ["proxy.internal", "10.0.0.1/8", "127.0.0.1,*", "300.1.1.1"])
    def test_what_uvicorn_would_misread_is_refused(self, value: str) -> None:
        """uvicorn takes an unreadable entry for a literal host name and trusts nothing (or
        the wrong thing) silently: here it is an error naming the entry."""
        with pytest.raises(
            SettingsError, match=r"SERVERMODE_FORWARDED_ALLOW_IPS'\): .* is not an IP"
        ):
            settings_of({"SERVERMODE_FORWARDED_ALLOW_IPS": value})
        with pytest.raises(SettingsError, match=r"'--forwarded-allow-ips'.*: .* is not an IP"):
            settings_of({}, "--forwarded-allow-ips", value)
        with pytest.raises(SettingsError, match=r"forwarded-allow-ips: .* is not an IP"):
            check_settings(Settings(forwarded_allow_ips=value))


class TestFleet:
    def test_several_workers_are_accepted_with_a_fleet(self) -> None:
        settings = settings_of({"SERVERMODE_FLEET": "redis://127.0.0.1:6379/0"}, "--workers", "4")
        assert (settings.workers, settings.fleet) == (4, "redis://127.0.0.1:6379/0")

    @pytest.mark.parametrize(
        ("environment", "says"),
        [
            ({"SERVERMODE_FLEET": "http://h/0"}, "expected redis://HOST:PORT/DB"),
            ({"SERVERMODE_FLEET_PERIOD": "0"}, "fleet period must be"),
            ({"SERVERMODE_FLEET_PERIOD": "nan"}, "fleet period must be"),
            (
                {"SERVERMODE_FLEET_PERIOD": "2", "SERVERMODE_FLEET_HEARTBEAT_TTL": "3"},
                "at least twice the fleet period",
            ),
            ({"SERVERMODE_INSTANCE_ID": " "}, "instance id must be printable"),
        ],
    )
    def test_bad_fleet_settings_are_refused_saying_why(
        self, environment: dict[str, str], says: str
    ) -> None:
        with pytest.raises(SettingsError, match=says):
            settings_of(environment)

    def test_the_environment_of_a_worker_gives_back_the_settings(self) -> None:
        from servermode.adapters.cli.settings import settings_environment

        settings = settings_of(
            {"SERVERMODE_ADMIN_TOKEN": "s3cret"},
            *("--fleet", "redis://127.0.0.1:6379/2", "--workers", "3", "--drain-timeout", "7.5"),
            *("--insecure", "--instance-id", "web", "--fleet-period", "0.2"),
        )
        assert settings_of(settings_environment(settings)) == settings
