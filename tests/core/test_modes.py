"""Modes, states and mode names."""

from __future__ import annotations

import pytest
from servermode.core import InvalidMode, Mode, State, parse_mode


class TestParseMode:
    @pytest.mark.parametrize(
        ("text", "mode"),
        [
            ("production", Mode.PRODUCTION),
            ("MAINTENANCE", Mode.MAINTENANCE),
            ("Production", Mode.PRODUCTION),
            (" maintenance ", Mode.MAINTENANCE),
            (Mode.MAINTENANCE, Mode.MAINTENANCE),
        ],
    )
    def test_names_are_case_insensitive(self, text: str, mode: Mode) -> None:
        """A mode name is read whatever its case."""
        assert parse_mode(text) is mode

    @pytest.mark.parametrize("bad", ["", "prod", "maintenance mode", None, 1, ["production"]])
    def test_bad_names_raise_naming_the_value(self, bad: object) -> None:
        """Anything but the two names raises InvalidMode carrying the bad value."""
        with pytest.raises(InvalidMode) as raised:
            parse_mode(bad)
        assert raised.value.value == bad
        assert repr(bad) in str(raised.value)

    def test_draining_states_are_not_modes(self) -> None:
        """A state name that is not a mode is refused."""
        with pytest.raises(InvalidMode):
            parse_mode("draining_to_maintenance")


class TestState:
    def test_mode_in_force_while_draining_is_the_one_being_left(self) -> None:
        """While draining, the mode in force is still the old one; the target is the new one."""
        assert State.DRAINING_TO_MAINTENANCE.mode is Mode.PRODUCTION
        assert State.DRAINING_TO_MAINTENANCE.target is Mode.MAINTENANCE
        assert State.DRAINING_TO_PRODUCTION.mode is Mode.MAINTENANCE
        assert State.DRAINING_TO_PRODUCTION.target is Mode.PRODUCTION

    def test_steady_states_have_no_target(self) -> None:
        """A steady state is its own mode and leads nowhere."""
        for mode in Mode:
            assert mode.state.mode is mode
            assert mode.state.target is None
            assert not mode.state.is_draining
