"""load/bench_streams.py still runs: its --smoke version opens streams beside a good client and reports.

Latency is measured there, not gated. What is checked: the run ends by itself with status 0, the
good client made its calls with no failures in both rows, and every stream said `true` once it opened
while active (the keeper is always active), with resends when a row outlives --stream-resend.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_streams_benchmark_smoke_reports_both_rows() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "load" / "bench_streams.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("SUMMARY streams: 200 streams:"), done.stdout
    assert lines[-1].endswith(", 0 failed calls"), lines[-1]
    rows = {}
    for line in lines:
        fields = line.split()
        if fields and fields[0].replace(",", "").isdigit():
            rows[int(fields[0].replace(",", ""))] = fields
    assert set(rows) == {0, 200}, done.stdout
    for fields in rows.values():
        assert int(fields[1]) > 50 and int(fields[2]) == 0, fields  # calls made, none failed
    assert int(rows[200][-1].replace(",", "")) >= 200, done.stdout  # an activation per stream at least
