"""The soak (load/soak.py) for 60 seconds: no error of any kind, every call answered, RSS flat after warm-up.

This is the version CI can afford. The longer run, by hand: `python load/soak.py --duration 600
--pods 200 --series 40 --scaledobjects 40 --retention 120s` (8,000 datapoints/s, 40 ScaledObjects).
Timing (start-up, late push ticks, GetMetrics p99, evaluations against their schedule, how soon the
errors come once the pushes stop) is the soak's report, printed here (`pytest -s`), not asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOAD = Path(__file__).resolve().parents[2] / "load"
PODS, SERIES, SCALEDOBJECTS = 40, 20, 10


def test_a_minute_of_load_leaves_no_error_and_flat_memory(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [sys.executable, str(LOAD / "soak.py"), "--duration", "60", "--pods", str(PODS), "--series", str(SERIES)]
    command += ["--scaledobjects", str(SCALEDOBJECTS), "--interval", "1", "--stale-after", "3s", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=LOAD.parent)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["passed"] and figures["errors"] == {}
    pushes = figures["pushes"]
    assert pushes["ticks"] > 0 and pushes["requests"] == pushes["ticks"]  # 40 pods make one batch a tick
    assert figures["datapoints_accepted"] == figures["datapoints_pushed"] == pushes["ticks"] * PODS * SERIES
    # every evaluation begun was answered, GetMetrics timed in each, and every stream stayed open
    assert figures["evaluations"] == figures["evaluations_begun"] >= SCALEDOBJECTS
    latency = figures["getmetrics_latency_ms"]
    assert latency["all"]["n"] == figures["evaluations"]
    assert latency["query"]["n"] > 0 and latency["policy"]["n"] > 0
    rss = figures["rss_mib"]
    assert rss["growth_after_warm_up"] <= rss["bound"]
    # once the pushes stop, every ScaledObject answers UNAVAILABLE, and none answered 0 before it
    stale = figures["once_pushes_stop"]
    assert len(stale["delays"]) == SCALEDOBJECTS and stale["zero_first"] == [] and stale["other_codes"] == {}
