"""Fleet mode, long: five instances on one Redis, 60 flips under load from 16 clients."""

from __future__ import annotations

import pytest

from tests.e2e.fleet import flip_under_load


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_fleet_flips_under_load_for_long() -> None:
    flip_under_load(names="ABCDE", flips=60, clients=16)
