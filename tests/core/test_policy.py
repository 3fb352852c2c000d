"""The admission policy and the Context Services preset."""

from __future__ import annotations

import pytest
from servermode.core import CONTEXT_SERVICES, AdmissionPolicy, State, UnknownCategory

P, M = State.PRODUCTION, State.MAINTENANCE
TO_M, TO_P = State.DRAINING_TO_MAINTENANCE, State.DRAINING_TO_PRODUCTION

# ARCHITECTURE.md, "The gate", written out state by state.
PRESET = {
    "profile": {P},
    "service": {P},
    "schema": {M},
    "schema_read": {P, M},
    "admin": {P, M, TO_M, TO_P},  # the controller refuses changes while draining, audited
    "server": {P, M, TO_M, TO_P},
}


class TestContextServicesPreset:
    @pytest.mark.parametrize("category", sorted(PRESET))
    @pytest.mark.parametrize("state", list(State))
    def test_preset_matches_the_architecture_table(self, category: str, state: State) -> None:
        """Each category is admitted exactly in the states the architecture lists."""
        assert CONTEXT_SERVICES.admits(state, category) is (state in PRESET[category])

    def test_only_request_work_is_counted(self) -> None:
        """Status and the mode switch itself are never drained."""
        assert set(CONTEXT_SERVICES.counted_categories) == {
            "profile",
            "service",
            "schema",
            "schema_read",
        }

    def test_unknown_category_is_an_error(self) -> None:
        """Asking about a category the policy does not know raises UnknownCategory."""
        with pytest.raises(UnknownCategory, match="'billing'"):
            CONTEXT_SERVICES.admits(P, "billing")


class TestFromTable:
    def test_builds_rules_from_state_names(self) -> None:
        """A table of state names becomes a policy."""
        policy = AdmissionPolicy.from_table({"read": ["production", "maintenance"], "ping": []})
        assert policy.admits(M, "read")
        assert not policy.admits(TO_M, "read")
        assert not policy.admits(P, "ping")
        assert policy.categories == ("read", "ping")

    def test_uncounted_must_name_table_categories(self) -> None:
        """A typo in the uncounted list is caught, not ignored."""
        with pytest.raises(ValueError, match="billing"):
            AdmissionPolicy.from_table({"read": ["production"]}, uncounted=["billing"])

    def test_bad_state_name_is_refused(self) -> None:
        """A state name that does not exist is refused."""
        with pytest.raises(ValueError, match="prod"):
            AdmissionPolicy.from_table({"read": ["prod"]})

    def test_empty_policy_is_refused(self) -> None:
        """A policy without categories would refuse everything silently."""
        with pytest.raises(ValueError):
            AdmissionPolicy({})


class TestCountedCategoriesWhileDraining:
    def test_a_category_a_drain_could_never_wait_out_is_refused(self) -> None:
        """A counted category admitted while draining to maintenance but refused in maintenance
        would run on after the drain: such a policy is refused, naming the category."""
        with pytest.raises(ValueError, match=r"'upload'.*draining_to_maintenance.*maintenance"):
            AdmissionPolicy.from_table(
                {"upload": ["production", "draining_to_maintenance"], "ping": list(State)},
                uncounted=["ping"],
            )

    def test_uncounted_categories_may_pass_in_any_state(self) -> None:
        """Only counted requests are drained: an uncounted one may pass while draining."""
        policy = AdmissionPolicy.from_table(
            {"ping": ["draining_to_production"]}, uncounted=["ping"]
        )
        assert policy.admits(TO_P, "ping")

    def test_a_category_the_target_admits_may_pass_while_draining(self) -> None:
        """Admitted while draining to maintenance and in maintenance: allowed, never waited."""
        policy = AdmissionPolicy.from_table(
            {"read": ["production", "draining_to_maintenance", "maintenance"]}
        )
        assert policy.admits(TO_M, "read")
        assert policy.outgoing(TO_M) == ()

    def test_outgoing_is_what_the_drain_target_refuses(self) -> None:
        """The categories a drain waits for: counted, and refused by the drain's target."""
        assert CONTEXT_SERVICES.outgoing(TO_M) == ("profile", "service")
        assert CONTEXT_SERVICES.outgoing(TO_P) == ("schema",)


class TestFromMapping:
    """A policy built from the ``categories`` of a config mapping (issue 10)."""

    def test_categories_and_servermode_own(self) -> None:
        """Declared categories admit where they say; admin and server are added, uncounted."""
        policy = AdmissionPolicy.from_mapping(
            {
                "categories": {
                    "orders": {"admitted_in": ["production"]},
                    "reports": {"admitted_in": ["production", "maintenance"]},
                    "migrations": {"admitted_in": ["maintenance"], "counted": True},
                    "audit": {"admitted_in": ["production"], "counted": False},
                },
                "routes": "left to the route rules",
            }
        )
        assert policy.admits(P, "orders") and not policy.admits(M, "orders")
        assert policy.admits(M, "reports") and not policy.admits(TO_M, "reports")
        assert policy.admits(M, "migrations") and not policy.admits(P, "migrations")
        assert set(policy.counted_categories) == {"orders", "reports", "migrations"}
        for own in ("admin", "server"):
            assert all(policy.admits(state, own) for state in State)
            assert own not in policy.counted_categories

    def test_the_preset_as_a_mapping_is_the_preset(self) -> None:
        """The Context Services table, as a mapping, builds exactly CONTEXT_SERVICES."""
        table = {
            name: {"admitted_in": sorted(s.value for s in states)}
            for name, states in PRESET.items()
            if name not in ("admin", "server")
        }
        assert AdmissionPolicy.from_mapping({"categories": table}).rules == CONTEXT_SERVICES.rules

    @pytest.mark.parametrize(
        ("categories", "message"),
        [
            (None, "categories: expected a table of categories"),
            ({}, "categories: expected a table of categories"),
            ({"a b": {"admitted_in": []}}, "categories.a b: expected a category name"),
            ({"admin": {"admitted_in": ["production"]}}, "categories.admin: expected a category"),
            ({"x": ["production"]}, "categories.x: expected a table with admitted_in"),
            ({"x": {"admited_in": ["production"]}}, "categories.x.admited_in: unknown key"),
            ({"x": {"counted": False}}, "categories.x.admitted_in: missing"),
            ({"x": {"admitted_in": "production"}}, "categories.x.admitted_in: expected a list"),
            ({"x": {"admitted_in": ["prod"]}}, "categories.x.admitted_in: expected states among"),
            (
                {"x": {"admitted_in": ["production"], "counted": "yes"}},
                "categories.x.counted: expected true or false",
            ),
            (
                {"x": {"admitted_in": ["production", "draining_to_maintenance"]}},
                "categories.x: category 'x' is counted and admitted in draining_to_maintenance "
                "but not in maintenance",
            ),
        ],
    )
    def test_mistakes_name_the_key(self, categories: object, message: str) -> None:
        """Each mistake is a ValueError whose message starts with the key and says what was
        expected."""
        with pytest.raises(ValueError) as raised:
            AdmissionPolicy.from_mapping({"categories": categories})
        assert str(raised.value).startswith(message), raised.value
