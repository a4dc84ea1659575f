"""load/bench_streams.py still runs: its --smoke version opens streams beside a good client and reports.

Latency is measured there, not gated. What is checked: the run ends by itself with status 0, the
good client made its calls with no failures in every row, and every stream said `true` once it opened
while active (the keeper is always active), with resends when a row outlives --stream-resend; the
bare grpc.aio server it compares with served the same streams.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_streams_benchmark_smoke_reports_every_row() -> None:
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
        if len(fields) > 1 and fields[0] in ("scaler", "grpc.aio") and fields[1].replace(",", "").isdigit():
            rows[fields[0], int(fields[1].replace(",", ""))] = fields
    assert set(rows) == {("scaler", 0), ("scaler", 200), ("grpc.aio", 200)}, done.stdout
    for fields in rows.values():
        assert int(fields[2]) > 50 and int(fields[3]) == 0, fields  # calls made, none failed
    for server in ("scaler", "grpc.aio"):
        assert int(rows[server, 200][-1].replace(",", "")) >= 200, done.stdout  # an activation per stream at least
