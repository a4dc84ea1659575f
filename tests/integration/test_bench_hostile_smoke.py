"""load/bench_hostile.py still runs: its --smoke version completes every attack row and reports it.

The attacks' defences are measured there, not gated: a row may say NOT MET, or that the attacker saw
something unexpected. What is checked is that the run completes by itself with exit status 0, that
it reports one row per attack after a baseline with a finite p99, and that each MET or NOT MET
follows from the figures in its row.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ATTACKS = 18


def test_hostile_benchmark_smoke_reports_every_attack(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "load" / "bench_hostile.py"), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1].startswith("SUMMARY hostile:"), done.stdout[-3000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [row["number"] for row in rows] == list(range(ATTACKS + 1)), [row["attack"] for row in rows]
    baseline = rows[0]
    assert baseline["status"] == "ok", baseline
    assert baseline["calls"] > 0 and math.isfinite(baseline["p99_ms"]), baseline
    for row in rows:
        assert row["saw"] or row["status"] != "ok", row  # every attack that ran says what its attacker saw
        within = row["p99_ms"] < 100 and row["rss_peak_mib"] < 512 and row["errors"] == 0 and row["status"] == "ok"
        assert row["met"] == within, row
    assert report["summary"].endswith("MET"), report["summary"]
