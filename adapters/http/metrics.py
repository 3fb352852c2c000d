"""Prometheus metrics of ``GET /server/metrics``, read from the controller when scraped.

Nothing on a request's path writes a metric: the gate already counts what is admitted and
refused per category (beside its in-flight counters, under the same lock), and the collector
reads those counts, the state and the in-flight figures at scrape time. Transition records
arrive through the audit feed (:mod:`.feed`) and are tallied here.

Metric                                          Type       Labels
servermode_state                                gauge      state (1 for the current, 0 for others)
servermode_in_flight_requests                   gauge      category (counted categories)
servermode_requests_total                       counter    category, outcome (admitted, refused)
servermode_requests_bypassed_total              counter    category (refused, then let through)
servermode_transitions_total                    counter    from_state, to_state, outcome
servermode_drain_duration_seconds               histogram  outcome (completed, forced, ...)
servermode_last_transition_timestamp_seconds    gauge      (when the current state began)
servermode_fleet_instances                      gauge      state (fleet mode: instances per state)
servermode_fleet_connected                      gauge      (fleet mode: 1 while Redis answers)

The state is a state set (one gauge per state) rather than ``prometheus_client``'s ``Enum``,
which its multiprocess mode does not support. Each process exports its own figures.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from servermode.core import ModeController, Outcome, State, TransitionRecord
from servermode.core.fleet import FleetController

__all__ = [
    "DRAIN_BUCKETS",
    "DRAIN_OUTCOMES",
    "ServermodeCollector",
    "TransitionTally",
    "exposition",
    "metrics_registry",
]

#: Upper bounds (seconds) of the drain duration buckets: from a drain with nothing in flight
#: (milliseconds) to the longest drain timeouts.
DRAIN_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

#: How a drain that ran in this process can end; the other outcomes drained nothing here.
DRAIN_OUTCOMES: tuple[Outcome, ...] = (
    Outcome.COMPLETED,
    Outcome.FORCED,
    Outcome.ROLLED_BACK,
    Outcome.CANCELLED,
)

#: The outcomes of a request at the gate, as ``servermode_requests_total`` labels them.
REQUEST_OUTCOMES = ("admitted", "refused")


@dataclass(slots=True)
class _Histogram:
    """Observations per bucket (not cumulative; the last slot is +Inf), their sum and count."""

    bounds: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        running, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append((_le(bound), float(running)))
        return buckets


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class TransitionTally:
    """Counts transition records by (from, to, outcome) and drain durations by outcome.

    Fed by the audit feed (on the event loop); read by the collector, possibly from another
    thread: both sides take one lock.
    """

    def __init__(self, buckets: Sequence[float] = DRAIN_BUCKETS) -> None:
        self._lock = threading.Lock()
        self._transitions: Counter[tuple[str, str, str]] = Counter()
        self._drains = {outcome.value: _Histogram(buckets) for outcome in DRAIN_OUTCOMES}

    def observe(self, record: TransitionRecord) -> None:
        key = (record.from_state.value, record.to_state.value, record.outcome.value)
        with self._lock:
            self._transitions[key] += 1
            drain = self._drains.get(record.outcome.value)
            if drain is not None:
                drain.observe(record.duration_ms / 1000)

    def transitions(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._transitions)

    def drains(self) -> dict[str, tuple[list[tuple[str, float]], float]]:
        """Per drain outcome: the cumulative buckets and the sum of the durations (seconds)."""
        with self._lock:
            return {name: (h.cumulative(), h.total) for name, h in self._drains.items()}


class ServermodeCollector:
    """A ``prometheus_client`` collector over one controller and its transition tally.

    ``controller`` returns the controller, or None once it is gone (a weak reference: the
    registry of monitors must not keep controllers alive); then there is nothing to collect.
    """

    def __init__(
        self, controller: Callable[[], ModeController | None], tally: TransitionTally
    ) -> None:
        self._controller = controller
        self.tally = tally

    def collect(self) -> Iterable[Metric]:
        controller = self._controller()
        if controller is None:
            return []
        status = controller.status()

        state = GaugeMetricFamily(
            "servermode_state", "1 for the server's state, 0 for the others", labels=["state"]
        )
        for each in State:
            state.add_metric([each.value], 1.0 if each is status.state else 0.0)

        in_flight = GaugeMetricFamily(
            "servermode_in_flight_requests",
            "Requests running now, per counted category (what a drain may wait for)",
            labels=["category"],
        )
        for category, n in status.in_flight.items():
            in_flight.add_metric([category], float(n))

        requests = CounterMetricFamily(
            "servermode_requests",
            "Requests the gate admitted or refused since the process started, per category",
            labels=["category", "outcome"],
        )
        for category, counts in controller.gate.request_totals().items():
            for outcome, n in zip(REQUEST_OUTCOMES, counts, strict=True):
                requests.add_metric([category, outcome], float(n))

        bypassed = CounterMetricFamily(
            "servermode_requests_bypassed",
            "Requests the mode refused and a bypass let through, per category (also counted "
            "as refused)",
            labels=["category"],
        )
        for category, n in controller.gate.bypassed().items():
            bypassed.add_metric([category], float(n))

        transitions = CounterMetricFamily(
            "servermode_transitions",
            "Transition attempts since the process started, by states and outcome",
            labels=["from_state", "to_state", "outcome"],
        )
        for labels, n in sorted(self.tally.transitions().items()):
            transitions.add_metric(list(labels), float(n))

        drains = HistogramMetricFamily(
            "servermode_drain_duration_seconds",
            "How long drains took, from the switch asked to its end, by how they ended",
            labels=["outcome"],
        )
        for outcome, (buckets, total) in self.tally.drains().items():
            drains.add_metric([outcome], buckets, total)

        began = status.drain_started if status.drain_started is not None else status.since
        last = GaugeMetricFamily(
            "servermode_last_transition_timestamp_seconds",
            "When the current state began (Unix time)",
            value=began.timestamp(),
        )
        families = [state, in_flight, requests, bypassed, transitions, drains, last]
        if isinstance(controller, FleetController):
            families += _fleet_families(controller)
        return families


def _fleet_families(controller: FleetController) -> list[Metric]:
    """The fleet as this instance last saw it (no engine call): instances per state, and
    whether the engine answers."""
    view = controller.fleet.view()
    per_state = Counter(instance["state"] for instance in view["instances"])
    instances = GaugeMetricFamily(
        "servermode_fleet_instances",
        "Live instances of the fleet per local state, as this instance last saw them",
        labels=["state"],
    )
    for each in State:
        instances.add_metric([each.value], float(per_state.get(each.value, 0)))
    connected = GaugeMetricFamily(
        "servermode_fleet_connected",
        "1 while this instance reaches the fleet engine (Redis), 0 while it serves under the "
        "last fleet state it knew",
        value=1.0 if view["engine"] == "connected" else 0.0,
    )
    return [instances, connected]


def metrics_registry(
    controller: ModeController, tally: TransitionTally, *, process: bool = True
) -> CollectorRegistry:
    """A registry of servermode's metrics and, with ``process``, the process's and Python's."""
    registry = CollectorRegistry()
    registry.register(ServermodeCollector(weakref.ref(controller), tally))
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The registry's metrics in the format ``accept`` asks for (Prometheus text by default)."""
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type
