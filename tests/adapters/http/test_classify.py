"""Route rules: the Context Services preset, path normal form, rules as data."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servermode.adapters.http.classify import CONTEXT_SERVICES_RULES, RouteRules, normalise_path
from servermode.adapters.http.routes import owns
from servermode.core import CONTEXT_SERVICES, AdmissionPolicy


class TestPreset:
    @pytest.mark.parametrize(
        ("method", "path", "category"),
        [
            ("GET", "/metadata/profiles/extensions", "schema_read"),
            ("HEAD", "/metadata/identification-keys", "schema_read"),
            ("POST", "/metadata/profiles/extensions", "schema"),
            ("DELETE", "/metadata/services/extensions/x", "schema"),
            ("GET", "/profiles/42", "profile"),
            ("PUT", "/customers/7", "profile"),
            ("GET", "/services/9/states", "service"),
            ("GET", "/", "service"),
            ("GET", "/metadatax", "service"),  # a prefix matches whole segments only
            ("GET", "/PROFILES/1", "profile"),  # case does not escape a category
        ],
    )
    def test_context_services_categories(self, method: str, path: str, category: str) -> None:
        """The preset puts each Context Services route in its documented category."""
        assert CONTEXT_SERVICES_RULES.classify(method, path) == category

    def test_preset_names_only_policy_categories(self) -> None:
        """Every category of the preset is one the Context Services policy knows."""
        CONTEXT_SERVICES_RULES.check(CONTEXT_SERVICES)


class TestServerRoutes:
    """servermode classifies its own exact paths; every other path is the app's (item 5)."""

    @pytest.mark.parametrize(
        ("method", "path", "category"),
        [
            ("POST", "/server/mode", "admin"),
            ("GET", "/server/mode", "server"),  # answered 405 by servermode
            ("post", "/server/mode", "server"),  # the route compares methods as sent: 405
            ("GET", "/server/status", "server"),
            ("HEAD", "/server/status", "server"),
            ("GET", "/server/transitions", "server"),
            ("GET", "/server/health/live", "server"),
            ("GET", "/server/health/ready", "server"),
            ("GET", "/server/openapi.json", "server"),
        ],
    )
    def test_servermode_classifies_its_own_routes(
        self, method: str, path: str, category: str
    ) -> None:
        """Whatever the rules (here: everything is 'profile'), servermode's paths are its own."""
        everything_profile = RouteRules.from_table([("*", "/", "profile")], default="profile")
        for rules in (CONTEXT_SERVICES_RULES, everything_profile):
            assert rules.classify(method, path) == category

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/server/export-all-profiles"),
            ("POST", "/SERVER/MODE"),
            ("GET", "/Server/Status"),
            ("GET", "/server/status/"),  # a trailing slash: not the exact path
            ("GET", "/server/status/x"),
            ("GET", "/server/health"),
            ("GET", "/server"),
            ("GET", "/health/live"),
            ("GET", "/health/ready"),
            ("GET", "/openapi.json"),
            ("GET", "/docs"),
        ],
    )
    def test_other_paths_are_the_apps(self, method: str, path: str) -> None:
        """Any other path, whatever its prefix or case, gets the rules' category."""
        assert not owns(path)
        assert CONTEXT_SERVICES_RULES.classify(method, path) == "service"
        export = "/server/export-all-profiles"
        rules = RouteRules.from_table([("*", export, "profile")], default="x")
        assert rules.classify(method, path) == ("profile" if path == export else "x")

    @pytest.mark.parametrize(
        ("path", "captured"),
        [
            ("/server/mode", "/server/mode"),
            ("/SERVER/MODE", "/server/mode"),
            ("/server/mode/", "/server/mode"),
            ("/server", "/server/health/live"),
            ("/server/health", "/server/health/ready"),
            ("/server/openapi.json", "/server/openapi.json"),
        ],
    )
    def test_a_rule_that_would_capture_a_server_route_is_refused(
        self, path: str, captured: str
    ) -> None:
        """Such a rule is an error when the rules are built, naming the rule and the route."""
        rows = [{"path": "/orders", "category": "profile"}]
        rows.append({"methods": ["GET"], "path": path, "category": "server"})
        with pytest.raises(ValueError, match=r"rule 2 \(GET .*\) covers servermode's") as error:
            RouteRules.from_json({"default": "service", "rules": rows})
        assert path in str(error.value) and captured in str(error.value)

    @pytest.mark.parametrize(
        "path", ["/", "/server/modes", "/server/export", "/server/status/x", "/health", "/docs"]
    )
    def test_rules_beside_the_server_routes_are_allowed(self, path: str) -> None:
        """The catch-all and rules on the app's own paths are fine; "/" never applies to ours."""
        rules = RouteRules.from_table([("*", path, "profile")], default="service")
        assert rules.classify("GET", path) == "profile"
        assert rules.classify("GET", "/server/status") == "server"
        assert rules.classify("POST", "/server/mode") == "admin"

    def test_policy_check_covers_the_server_categories(self) -> None:
        """A policy must know admin and server too, since classify returns them."""
        rules = RouteRules.from_table([], default="profile")
        assert {"admin", "server"} <= rules.categories()
        policy = AdmissionPolicy.from_table({"profile": ["production"]})
        with pytest.raises(ValueError, match=r"\['admin', 'server'\]"):
            rules.check(policy)


class TestNormalPath:
    @pytest.mark.parametrize(
        ("raw", "normal"),
        [
            ("/profiles/1", "/profiles/1"),
            ("/server/../profiles/1", "/profiles/1"),
            ("/server//status", "/server/status"),
            ("/./server/./status", "/server/status"),
            ("/../../profiles", "/profiles"),
            ("/profiles/1/", "/profiles/1/"),
            ("/profiles/1/..", "/profiles/"),
            ("//", "/"),
            ("", "/"),
        ],
    )
    def test_normal_form(self, raw: str, normal: str) -> None:
        """Dot segments are resolved and repeated slashes collapsed."""
        assert normalise_path(raw) == normal

    @pytest.mark.parametrize(
        ("decoded_path", "category"),
        [
            ("/server/../profiles/1", "profile"),
            ("/profiles/../../server/status", "server"),
            ("/profiles/../server/../server/mode", "server"),  # GET: servermode's 405
            ("/server//..//profiles/1", "profile"),
            # %2F arrives decoded from the server; its segments classify like real slashes.
            ("/server%2F..%2Fprofiles/1".replace("%2F", "/"), "profile"),
        ],
    )
    def test_traversal_cannot_borrow_a_category(self, decoded_path: str, category: str) -> None:
        """A path is classified by where it really leads, not by its first segment."""
        normal = normalise_path(decoded_path)
        assert CONTEXT_SERVICES_RULES.classify("GET", normal) == category


class TestRulesAsData:
    def test_first_matching_rule_wins_and_default_catches_the_rest(self) -> None:
        """Order decides; unmatched requests get the default category."""
        rules = RouteRules.from_table(
            [("GET", "/a", "schema_read"), ("*", "/a", "schema")], default="profile"
        )
        assert rules.classify("get", "/a/1") == "schema_read"
        assert rules.classify("POST", "/a/1") == "schema"
        assert rules.classify("GET", "/b") == "profile"

    def test_from_json(self) -> None:
        """Rules load from JSON data with methods, path and category."""
        rules = RouteRules.from_json(
            {
                "default": "service",
                "rules": [
                    {"methods": ["GET"], "path": "/reports", "category": "schema_read"},
                    {"path": "/jobs", "category": "schema"},
                ],
            }
        )
        assert rules.classify("GET", "/reports/1") == "schema_read"
        assert rules.classify("DELETE", "/jobs/1") == "schema"
        assert rules.classify("GET", "/else") == "service"

    @pytest.mark.parametrize(
        "data",
        [
            {"rules": []},
            {"default": "service"},
            {"default": "service", "rules": [{"path": "/x"}]},
            {"default": "service", "rules": [{"path": 5, "category": "schema"}]},
            {"default": "service", "rules": [{"path": "x", "category": "schema"}]},
            {"default": "service", "rules": ["nonsense"]},
        ],
    )
    def test_bad_json_rules_are_rejected(self, data: dict[str, object]) -> None:
        """Malformed rules raise ValueError with a message."""
        with pytest.raises(ValueError):
            RouteRules.from_json(data)

    def test_unknown_categories_are_reported(self) -> None:
        """check() names the categories the policy does not know."""
        rules = RouteRules.from_table([("*", "/x", "reports")], default="billing")
        with pytest.raises(ValueError, match=r"\['billing', 'reports'\]"):
            rules.check(CONTEXT_SERVICES)


def _reference_normal(path: str) -> str:
    """The normal form by the definition: resolve every segment (no shortcut)."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    normal = "/" + "/".join(segments)
    return normal + "/" if segments and path.endswith(("/", "/.", "/..")) else normal


def _reference_classify(rules: RouteRules, method: str, path: str) -> str:
    """The first rule in order whose methods and whole-segment prefix match, by definition."""
    method, path = method.upper(), path.lower()
    for rule in rules.rules:
        if rule.methods is not None and method not in rule.methods:
            continue
        if rule.key == "/" or path == rule.key or path.startswith(rule.key + "/"):
            return rule.category
    return rules.default


_SEGMENTS = st.sampled_from(["a", "b", "ab", "A", ".", "..", "", "x.y"])
_PATHS = st.lists(_SEGMENTS, max_size=5).map(lambda parts: "/" + "/".join(parts))
_PREFIXES = st.lists(st.sampled_from(["a", "b", "ab"]), max_size=3).map(
    lambda parts: "/" + "/".join(parts)
)
_METHOD_SPECS = st.sampled_from(["*", "GET", "POST", "GET HEAD", "PUT POST"])


class TestLookupTables:
    """Classification's precomputed tables and the normal-form shortcut change no answer."""

    @settings(max_examples=300, deadline=None)
    @given(path=st.one_of(_PATHS, st.text(alphabet="/.ab", max_size=12)))
    def test_normal_form_matches_the_definition(self, path: str) -> None:
        """normalise_path (with its shortcut for normal paths) agrees with the full resolution."""
        assert normalise_path(path) == _reference_normal(path)

    @settings(max_examples=300, deadline=None)
    @given(
        rows=st.lists(
            st.tuples(_METHOD_SPECS, _PREFIXES, st.sampled_from(["p", "q", "r"])), max_size=6
        ),
        method=st.sampled_from(["GET", "post", "HEAD", "PUT", "DELETE"]),
        path=_PATHS,
    )
    def test_classify_matches_a_linear_scan(
        self, rows: list[tuple[str, str, str]], method: str, path: str
    ) -> None:
        """classify gives the category of the first matching rule, as a scan of all rules does."""
        rules = RouteRules.from_table(rows, default="d")
        normal = normalise_path(path)
        assert rules.classify(method, normal) == _reference_classify(rules, method, normal)


class TestFromMapping:
    """Route rules built from the ``routes`` and ``default_category`` of a config mapping."""

    MAPPING = {  # noqa: RUF012
        "default_category": "orders",
        "routes": [
            {"methods": ["GET", "head"], "path": "/api/reports", "category": "reports"},
            {"path": "/admin/migrations", "category": "migrations"},
        ],
        "categories": "left to the policy",
    }

    @pytest.mark.parametrize(
        ("method", "path", "category"),
        [
            ("GET", "/api/reports/7", "reports"),
            ("HEAD", "/api/reports", "reports"),
            ("POST", "/api/reports", "orders"),
            ("DELETE", "/Admin/Migrations/3", "migrations"),
            ("GET", "/api/orders/1", "orders"),
            ("POST", "/server/mode", "admin"),
        ],
    )
    def test_routes_and_default(self, method: str, path: str, category: str) -> None:
        """The first matching route decides, the default takes the rest, servermode's own first."""
        assert RouteRules.from_mapping(self.MAPPING).classify(method, path) == category

    def test_no_routes_is_the_default_for_everything(self) -> None:
        """``routes`` may be left out: every application request is the default category."""
        rules = RouteRules.from_mapping({"default_category": "web"})
        assert rules.classify("POST", "/anything") == "web"

    @pytest.mark.parametrize(
        ("mapping", "message"),
        [
            ({}, "default_category: expected the category"),
            ({"default_category": "x", "routes": {}}, "routes: expected a list"),
            ({"default_category": "x", "routes": ["/api"]}, "routes[1]: expected a table"),
            (
                {
                    "default_category": "x",
                    "routes": [{"path": "/a", "category": "c", "method": []}],
                },
                "routes[1].method: unknown key",
            ),
            (
                {"default_category": "x", "routes": [{"path": "api", "category": "c"}]},
                "routes[1].path: expected a path starting with '/'",
            ),
            (
                {"default_category": "x", "routes": [{"path": "/a"}]},
                "routes[1].category: expected a category name",
            ),
            (
                {
                    "default_category": "x",
                    "routes": [{"path": "/a", "category": "c", "methods": "GET"}],
                },
                "routes[1].methods: expected a list of HTTP methods",
            ),
            (
                {
                    "default_category": "x",
                    "routes": [
                        {"path": "/a", "category": "c"},
                        {"path": "/server", "category": "c"},
                    ],
                },
                "routes[2].path: rule 2 (* /server -> c) covers servermode's own routes",
            ),
        ],
    )
    def test_mistakes_name_the_key(self, mapping: dict[str, object], message: str) -> None:
        """Each mistake is a ValueError whose message starts with the key."""
        with pytest.raises(ValueError) as raised:
            RouteRules.from_mapping(mapping)
        assert str(raised.value).startswith(message), raised.value
