"""The command as users run it: a subprocess that logs its ports and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

PORT_FLAGS = ["--otlp-grpc-port", "0", "--otlp-http-port", "0", "--scaler-port", "0", "--http-port", "0"]


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scaler", "serve", "--host", "127.0.0.1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _finish(proc: subprocess.Popen[str]) -> None:
    """Reap the process and close its pipes."""
    try:
        proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def test_serve_logs_json_ports_and_stops_on_sigterm() -> None:
    proc = _serve(*PORT_FLAGS)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        entry = json.loads(line)
        assert entry["level"] == "info" and "listening" in entry["message"]
        ports = dict(part.split("=") for part in entry["message"].split(": ", 1)[1].split())
        assert set(ports) == {"otlp-grpc", "otlp-http", "scaler", "http"}
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/readyz", timeout=5) as reply:
            assert reply.status == 200
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert "stopped" in rest
    finally:
        _finish(proc)


def test_bad_settings_stop_startup_naming_the_flag() -> None:
    proc = _serve("--stale-after", "soon")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "--stale-after" in err and "soon" in err

    proc = _serve(env={"SCALER_MAX_SERIES": "-5"})
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "--max-series (from SCALER_MAX_SERIES)" in err


def test_environment_sets_flags() -> None:
    proc = _serve(*PORT_FLAGS, "--log-format", "text", env={"SCALER_LOG_FORMAT": "json"})
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert not line.startswith("{"), "the flag beats the environment"
        assert "listening on 127.0.0.1" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        _finish(proc)
