"""load/bench_reaction.py still runs: its --smoke version, against a real Prometheus, ends with its SUMMARY line.

It reports, it does not judge: the smoke run scales every interval down, so its ratios are no
measurement and a target it does not meet is no failure. Without a prometheus binary the benchmark
says SKIPPED, and so does this test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
    for figure in ("activation p95", "freshness p50 ratio", "end-to-end 1->"):
        assert figure in last, last
    assert "MET" in last
    assert "ANOMALIES" not in done.stdout, done.stdout[-3000:]
