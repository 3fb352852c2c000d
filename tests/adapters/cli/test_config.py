"""servermode.toml: categories, route rules and settings in one file; every mistake named."""

from __future__ import annotations

from pathlib import Path

import pytest
from servermode.adapters.cli.config import ConfigError, load_config
from servermode.adapters.http.classify import CONTEXT_SERVICES_RULES
from servermode.core import CONTEXT_SERVICES, State

REPO = Path(__file__).resolve().parents[3]
PRESET_FILE = REPO / "examples" / "context-services.toml"

ORDERS = """
default_category = "orders"

[categories.orders]
admitted_in = ["production"]
[categories.reports]
admitted_in = ["production", "maintenance"]
[categories.migrations]
admitted_in = ["maintenance"]

[[routes]]
methods = ["GET"]
path = "/api/reports"
category = "reports"
[[routes]]
path = "/admin/migrations"
category = "migrations"

[serve]
port = 9001
drain_timeout = 5
state = "var/orders.db"
insecure = true
timeout_policy = "rollback"
"""


def written(tmp_path: Path, text: str, name: str = "servermode.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_preset_is_the_built_in_policy_and_rules() -> None:
    """examples/context-services.toml gives exactly CONTEXT_SERVICES and its route rules."""
    config = load_config(PRESET_FILE)
    assert config.policy is not None and config.rules is not None
    assert config.policy.rules == CONTEXT_SERVICES.rules
    assert list(config.policy.rules) == list(CONTEXT_SERVICES.rules)
    assert config.rules.rules == CONTEXT_SERVICES_RULES.rules
    assert config.rules.default == CONTEXT_SERVICES_RULES.default
    assert config.settings == {}


def test_an_api_of_its_own(tmp_path: Path) -> None:
    """Categories, routes and settings of an API that is not Context Services."""
    config = load_config(written(tmp_path, ORDERS))
    policy, rules = config.effective_policy(), config.effective_rules()
    assert rules.classify("GET", "/api/reports/1") == "reports"
    assert rules.classify("POST", "/api/reports") == "orders"
    assert rules.classify("POST", "/admin/migrations/4") == "migrations"
    assert policy.admits(State.MAINTENANCE, "reports")
    assert not policy.admits(State.PRODUCTION, "migrations")
    assert config.settings == {
        "port": 9001,
        "drain_timeout": 5.0,  # a whole number where seconds are expected is fine
        "state": str(tmp_path / "var/orders.db"),  # relative to the file's folder
        "insecure": True,
        "timeout_policy": "rollback",
    }


def test_settings_only_keeps_the_preset(tmp_path: Path) -> None:
    """A file with only [serve] leaves the Context Services policy and rules in force."""
    config = load_config(written(tmp_path, '[serve]\nstate = ":memory:"\n'))
    assert config.policy is None and config.rules is None
    assert config.effective_policy() is CONTEXT_SERVICES
    assert config.effective_rules() is CONTEXT_SERVICES_RULES
    assert config.settings == {"state": ":memory:"}


def test_routes_alone_may_use_the_preset_categories(tmp_path: Path) -> None:
    """Route rules without [categories] name the Context Services categories."""
    text = 'default_category = "service"\n[[routes]]\npath = "/reports"\ncategory = "schema"\n'
    config = load_config(written(tmp_path, text))
    assert config.effective_rules().classify("GET", "/reports/1") == "schema"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("defualt_category = 'x'\n", "defualt_category: unknown key, expected default_category"),
        ("port = 8080\n", "port: unknown key"),
        ("[categories.orders]\nadmitted_in = ['production']\n", "default_category: missing"),
        (
            "default_category = 'orders'\n[categories.orders]\nadmitted_in = ['production']\n"
            "[[routes]]\npath = '/api'\ncategroy = 'orders'\n",
            "routes[1].categroy: unknown key",
        ),
        (
            "default_category = 'orders'\n[categories.orders]\nadmitted_in = ['production']\n"
            "[[routes]]\npath = '/api'\ncategory = 'order'\n",
            "routes[1].category: expected one of the categories declared under [categories]: "
            "orders, admin, server; not 'order'",
        ),
        (
            "default_category = 'orders'\n",
            "default_category: expected one of the categories of the Context Services policy",
        ),
        (
            "default_category = 'a'\n[categories.a]\nadmitted_in = ['maintenance']\n"
            "[categories.b]\nadmitted_in = ['mainenance']\n",
            "categories.b.admitted_in: expected states among",
        ),
        ("[serve]\nprot = 1\n", "serve.prot: unknown key, expected one of"),
        ("[serve]\nport = '8080'\n", "serve.port: expected a whole number, not '8080'"),
        ("[serve]\nport = true\n", "serve.port: expected a whole number, not True"),
        ("[serve]\ninsecure = 'yes'\n", "serve.insecure: expected true or false"),
        ("[serve]\ntimeout_policy = 'wait'\n", "serve.timeout_policy: expected one of force"),
        ("[serve]\nadmin_token = 's3cret'\n", "serve.admin_token: unknown key; a file may name"),
        ("serve = 3\n", "serve: expected a table of settings"),
        ("[serve\n", "expected TOML: "),
    ],
)
def test_a_mistake_is_one_line_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    """Every mistake is a ConfigError: 'config FILE: KEY: expected ...', on one line."""
    path = written(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    error = str(raised.value)
    assert error.startswith(f"config {path}: "), error
    assert message in error
    assert "\n" not in error
    assert "s3cret" not in error


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    """A file that cannot be read says which and why."""
    with pytest.raises(ConfigError, match=r"config .*nowhere\.toml: cannot be read: No such file"):
        load_config(tmp_path / "nowhere.toml")
