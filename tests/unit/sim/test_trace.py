"""The trace generator: seeded, diurnal, bursty, log-normal lengths, CSV round trip."""

from __future__ import annotations

import statistics
from pathlib import Path

from scaler.sim.trace import TraceShape, bursts, diurnal_rate, generate, read_csv, write_csv

SHORT = TraceShape(hours=0.5, base_rps=4.0, bursts_per_hour=0.0)


def test_the_same_seed_gives_the_same_trace() -> None:
    assert list(generate(SHORT, 3)) == list(generate(SHORT, 3))
    assert list(generate(SHORT, 3)) != list(generate(SHORT, 4))


def test_the_rate_follows_the_day() -> None:
    rows = list(generate(SHORT, 1))
    assert abs(len(rows) - 4.0 * 1800) < 0.1 * 4.0 * 1800
    half = 900.0
    night = sum(1 for r in rows if r.t_seconds < 300 or r.t_seconds > 1500)
    day = sum(1 for r in rows if half - 300 <= r.t_seconds <= half + 300)
    assert day > 2 * night
    assert diurnal_rate(SHORT, 0.0) == 2.0 and diurnal_rate(SHORT, half) == 6.0


def test_bursts_multiply_the_rate() -> None:
    shape = TraceShape(hours=1.0, base_rps=2.0, amplitude=0.0, bursts_per_hour=4.0, burst_multiplier=5.0)
    rows = list(generate(shape, 2))
    import random

    spans = bursts(shape, random.Random(2))
    assert spans
    inside = sum(1 for r in rows if any(a <= r.t_seconds < b for a, b in spans))
    length = sum(b - a for a, b in spans)
    assert inside / length > 3 * (len(rows) - inside) / (3600 - length)


def test_lengths_are_log_normal_around_their_medians() -> None:
    rows = list(generate(TraceShape(hours=1.0, bursts_per_hour=0.0), 5))
    assert 450 < statistics.median(r.prompt_tokens for r in rows) < 580
    assert 175 < statistics.median(r.output_tokens for r in rows) < 225
    assert all(r.prompt_tokens + r.output_tokens <= 4096 and r.output_tokens >= 1 for r in rows)


def test_csv_round_trip(tmp_path: Path) -> None:
    rows = list(generate(SHORT, 9))
    path = tmp_path / "t.csv"
    assert write_csv(rows, path) == len(rows)
    assert path.read_text().splitlines()[0] == "t_seconds,prompt_tokens,output_tokens"
    assert read_csv(path) == rows


def test_the_committed_trace_is_small_and_readable() -> None:
    path = Path(__file__).resolve().parents[3] / "load" / "traces" / "day.csv"
    assert path.stat().st_size < 2 * 1024 * 1024
    rows = read_csv(path)
    assert rows[-1].t_seconds <= 7200 and len(rows) > 10_000
    assert rows == list(generate(TraceShape(hours=2.0), 1))  # load/tracegen.py --hours 2 --seed 1
