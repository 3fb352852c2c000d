"""What a switch would do now, told without doing it (a dry run).

Read off the same tables a switch follows: the drain to the asked-for mode (the transition
table's :func:`~.machine.drain_to`), what it would wait for (the policy's outgoing kind, with
the counts in flight now), what would be refused while it drains and once it is done, and the
recent request rate of each category. Nothing is saved, audited or moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .machine import TimeoutPolicy, drain_to
from .modes import Mode, State
from .policy import AdmissionPolicy
from .rates import Rates

__all__ = ["DryRun", "Verdict", "plan_dry_run"]


class Verdict(StrEnum):
    """What the switch would do if asked for now."""

    SWITCH = "switch"  # drain, then switch
    NOOP = "noop"  # the mode is in force already: nothing would change
    REFUSED = "refused"  # another switch is under way: it would be refused (503)


@dataclass(frozen=True, slots=True)
class DryRun:
    """The answer of a dry run; :meth:`to_dict` is what the HTTP API returns."""

    state: State
    target: Mode
    verdict: Verdict
    wait_for: dict[str, int]  # counted requests in flight now that the drain would wait for
    refused_while_draining: list[str]
    refused_after: list[str]
    request_rates: dict[str, float]  # requests per second per counted category, recently
    rate_window: float  # seconds the rates were measured over
    drain_timeout: float
    timeout_policy: TimeoutPolicy
    lame_duck: float = 0.0  # seconds readiness would fail before the drain begins

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "target": self.target.value,
            "would": self.verdict.value,
            "wait_for": self.wait_for,
            "refused_while_draining": self.refused_while_draining,
            "refused_after": self.refused_after,
            "request_rates": self.request_rates,
            "rate_window_s": self.rate_window,
            "drain_timeout": self.drain_timeout,
            "timeout_policy": self.timeout_policy.value,
            "lame_duck": self.lame_duck,
        }


def plan_dry_run(
    *,
    state: State,
    target: Mode,
    switching: bool,
    policy: AdmissionPolicy,
    in_flight: dict[str, int],
    rates: Rates,
    drain_timeout: float,
    timeout_policy: TimeoutPolicy,
    lame_duck: float = 0.0,
) -> DryRun:
    """The dry run of a switch to ``target`` from ``state`` (``switching``: one is under way)."""
    if switching:
        verdict = Verdict.REFUSED
    elif state.mode is target:
        verdict = Verdict.NOOP
    else:
        verdict = Verdict.SWITCH
    after = target.state
    refused_after = _refused(policy, after)
    if verdict is Verdict.SWITCH:
        draining = drain_to(target).state
        wait_for = {name: in_flight.get(name, 0) for name in policy.outgoing(draining)}
        refused_while_draining = _refused(policy, draining)
    else:
        wait_for, refused_while_draining = {}, []
        lame_duck = 0.0
    return DryRun(
        state=state,
        target=target,
        verdict=verdict,
        wait_for=wait_for,
        refused_while_draining=refused_while_draining,
        refused_after=refused_after,
        request_rates=rates.per_second,
        rate_window=rates.window,
        drain_timeout=drain_timeout,
        timeout_policy=timeout_policy,
        lame_duck=lame_duck,
    )


def _refused(policy: AdmissionPolicy, state: State) -> list[str]:
    admitted = policy.admitted(state)
    return [name for name in policy.categories if name not in admitted]
