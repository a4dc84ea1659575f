"""load/bench_reaction.py still runs: its --smoke version, against a real Prometheus, ends with its SUMMARY line.

It reports, it does not judge: the smoke run scales every interval down, so its ratios are no
measurement and a target it does not meet is no failure. What is checked is that each verdict, MET
or NOT MET, follows from the figure printed beside it. Without a prometheus binary the benchmark
says SKIPPED, and so does this test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.verdicts import NUMBER, Figure, assert_verdict_follows, number, parse

ROOT = Path(__file__).resolve().parents[2]


def test_reaction_benchmark_smoke_prints_its_summary() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "load" / "bench_reaction.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=39,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("SUMMARY reaction:"), done.stdout[-3000:]
    if "SKIPPED" in last:
        pytest.skip(last)
    line = parse(
        rf"SUMMARY reaction: \(smoke: scaled-down intervals, not a measurement\) "
        rf"activation p95 (?P<p95>{NUMBER})s \(target <= (?P<p95_target>{NUMBER})s\) (?P<p95_verdict>MET|NOT MET), "
        rf"Prometheus p50 / our p95 (?P<speedup>{NUMBER})x \(target >= (?P<speedup_target>{NUMBER})x\) "
        rf"(?P<speedup_verdict>MET|NOT MET); "
        rf"freshness p50 ratio (?P<fresh>{NUMBER})x \(target >= (?P<fresh_target>{NUMBER})x\) "
        rf"(?P<fresh_verdict>MET|NOT MET); "
        rf"end-to-end 1->\d+ p50 ratio {NUMBER}x \(no target; .*\)",
        last,
    )
    # A trial that missed its deadline makes its target NOT MET whatever the figures; the tables count them.
    activation_missed = _ours_missed(done.stdout, r"ours: StreamIsActive, OTLP push every [\d.]+ s")
    fresh_missed = _ours_missed(done.stdout, "ours: GetMetrics")
    for key, bound, missed in (
        ("p95", "<=", activation_missed),
        ("speedup", ">=", activation_missed),
        ("fresh", ">=", fresh_missed),
    ):
        figure = Figure(key, number(line[key]), bound, number(line[f"{key}_target"]))
        assert_verdict_follows(line[f"{key}_verdict"], [figure], excuse="missed trials" if missed else None)
    assert "ANOMALIES" not in done.stdout, done.stdout[-3000:]


def _ours_missed(output: str, path: str) -> int:
    """The `missed` column of the row whose path cell is `path` (a regex) in one of the benchmark's tables."""
    rows = [line for line in output.splitlines() if re.match(rf"{path}\s{{2,}}\d", line)]
    assert len(rows) == 1, f"no single row for {path!r} in:\n{output[-3000:]}"
    return int(rows[0].split()[-1])
