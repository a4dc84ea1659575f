"""The benchmarks in load/ still run: each one's --smoke version ends with its SUMMARY line.

They report, they do not judge: a target not met is a finding for docs/performance.md, not a failure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LOAD = Path(__file__).resolve().parents[2] / "load"


@pytest.mark.parametrize("name", ["ingest", "query", "memory"])
def test_benchmark_smoke_prints_its_summary(name: str) -> None:
    script = LOAD / f"bench_{name}.py"
    done = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=LOAD.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"SUMMARY {name}:"), done.stdout[-3000:]
    assert "MET" in last
