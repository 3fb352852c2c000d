"""The benchmark harness: interleaving, ratios, percentiles and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.harness import Options, Report, interleaved, paired_ratios, percentile


class TestInterleaved:
    def test_order_alternates_and_warmup_is_discarded(self) -> None:
        """Cases run once per round, the order reversed every other round; warm-up not kept."""
        calls: list[str] = []

        def case(name: str, value: float) -> float:
            calls.append(name)
            return value + len(calls)

        samples = interleaved({"a": lambda: case("a", 0), "b": lambda: case("b", 100)}, 2)
        assert calls == ["a", "b", "b", "a", "a", "b"]
        assert samples == {"a": [4.0, 5.0], "b": [103.0, 106.0]}

    def test_paired_ratios_pair_rounds(self) -> None:
        """Ratios are taken round by round."""
        assert paired_ratios([2.0, 9.0], [1.0, 3.0]) == [2.0, 3.0]


class TestPercentile:
    def test_nearest_rank(self) -> None:
        """The p-th percentile is a measured value: the nearest rank."""
        values = list(range(1, 101))
        assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
            50,
            99,
            100,
        )
        assert percentile([7.0], 99) == 7.0

    def test_no_values(self) -> None:
        """A percentile of nothing is an error, not a made-up number."""
        with pytest.raises(ValueError, match="no values"):
            percentile([], 50)


class TestReport:
    def test_checks_table_and_json(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A report prints its table and verdicts and writes the same facts as JSON."""
        report = Report("demo", quick=False, params={"ops": 10})
        report.table("title", ("case", "ns/op"), [("bare", 1234.4), ("gated", 2.5)])
        report.figure("ratio", 1.5)
        report.check("ratio", 1.5, 2.0, at_most=True, unit="x")
        report.check("throughput", 0.9, 0.95, at_most=False)
        path = tmp_path / "out" / "demo.json"
        report.finish(Options(quick=False, json=path))

        printed = capsys.readouterr().out
        assert "  case   ns/op\n  ------------\n  bare   1,234\n  gated   2.50\n" in printed
        assert "ratio: 1.50x (target <= 2.00x) met" in printed
        assert "throughput: 0.90 (target >= 0.95) MISSED" in printed
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["figures"] == {"ratio": 1.5}
        assert [(c["name"], c["met"]) for c in data["checks"]] == [
            ("ratio", True),
            ("throughput", False),
        ]
