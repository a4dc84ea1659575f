"""The soak (load/soak.py) for 60 seconds: no error of any kind, RSS flat after warm-up, latency recorded.

This is the version CI can afford. The longer run, by hand: `python load/soak.py --duration 600
--pods 200 --series 40 --scaledobjects 40 --retention 120s` (8,000 datapoints/s, 40 ScaledObjects).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOAD = Path(__file__).resolve().parents[2] / "load"


def test_a_minute_of_load_leaves_no_error_and_flat_memory(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [sys.executable, str(LOAD / "soak.py"), "--duration", "60", "--pods", "40", "--series", "20"]
    command += ["--scaledobjects", "10", "--interval", "1", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=LOAD.parent)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["passed"] and figures["errors"] == {}
    assert figures["datapoints_accepted"] == figures["datapoints_pushed"] >= 40 * 20 * 55
    assert figures["pushes"]["late_ticks"] == 0
    assert figures["evaluations"] >= 10 * 50  # every ScaledObject evaluated about once a second
    rss = figures["rss_mib"]
    assert rss["growth_after_warm_up"] <= rss["bound"]
    latency = figures["getmetrics_latency_ms"]["all"]
    assert latency["n"] == figures["evaluations"] and latency["p99"] < 1000
