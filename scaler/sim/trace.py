"""Seeded request traces: a diurnal arrival rate with bursts, log-normal prompt and output lengths.

Arrivals are a non-homogeneous Poisson process drawn by thinning. The rate is
`base_rps * (1 + amplitude * sin(...))`, one cycle per `day_seconds` (by default the trace's own
length, so a short trace still holds a night and a day), times `burst_multiplier` inside bursts,
which start as a Poisson process and last an exponential time. Same shape and seed, same trace.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("t_seconds", "prompt_tokens", "output_tokens")


@dataclass(frozen=True, slots=True)
class TraceRow:
    t_seconds: float
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class TraceShape:
    hours: float = 2.0
    base_rps: float = 6.0  # the mean rate over a day, outside bursts
    amplitude: float = 0.5  # diurnal swing: the rate runs from base*(1-a) at night to base*(1+a)
    day_seconds: float | None = None  # one diurnal cycle; None: the trace's length
    bursts_per_hour: float = 2.0
    burst_seconds: float = 60.0  # mean burst length
    burst_multiplier: float = 3.0
    prompt_median: float = 512.0
    prompt_sigma: float = 1.0
    output_median: float = 200.0
    output_sigma: float = 0.8
    max_total_tokens: int = 4096  # prompt + output, within every bundled profile's max_model_len

    def __post_init__(self) -> None:
        if self.hours <= 0 or self.base_rps <= 0 or not 0 <= self.amplitude < 1:
            raise ValueError("hours and base_rps must be positive, amplitude in [0, 1)")
        if self.burst_multiplier < 1 or self.max_total_tokens < 2:
            raise ValueError("burst_multiplier must be at least 1 and max_total_tokens at least 2")


def diurnal_rate(shape: TraceShape, t: float) -> float:
    """Requests per second at `t`, outside bursts: lowest at t=0 (night), highest half a day later."""
    day = shape.day_seconds or shape.hours * 3600.0
    return shape.base_rps * (1.0 - shape.amplitude * math.cos(2.0 * math.pi * t / day))


def bursts(shape: TraceShape, rng: random.Random) -> list[tuple[float, float]]:
    """(start, end) of each burst."""
    end, out, t = shape.hours * 3600.0, [], 0.0
    rate = shape.bursts_per_hour / 3600.0
    while rate > 0:
        t += rng.expovariate(rate)
        if t >= end:
            break
        out.append((t, min(end, t + rng.expovariate(1.0 / shape.burst_seconds))))
    return out


def generate(shape: TraceShape, seed: int) -> Iterator[TraceRow]:
    rng = random.Random(seed)
    spans = bursts(shape, rng)
    end = shape.hours * 3600.0
    peak = shape.base_rps * (1.0 + shape.amplitude) * shape.burst_multiplier
    t, i = 0.0, 0
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return
        while i < len(spans) and spans[i][1] <= t:
            i += 1
        in_burst = i < len(spans) and spans[i][0] <= t
        rate = diurnal_rate(shape, t) * (shape.burst_multiplier if in_burst else 1.0)
        if rng.random() * peak > rate:
            continue
        prompt = lognormal_tokens(rng, shape.prompt_median, shape.prompt_sigma, shape.max_total_tokens - 1)
        output = lognormal_tokens(rng, shape.output_median, shape.output_sigma, shape.max_total_tokens - prompt)
        yield TraceRow(round(t, 3), prompt, output)


def lognormal_tokens(rng: random.Random, median: float, sigma: float, cap: int) -> int:
    """A token count drawn log-normally around `median`, within 1..cap."""
    return max(1, min(cap, round(rng.lognormvariate(math.log(median), sigma))))


def write_csv(rows: Iterable[TraceRow], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow((f"{row.t_seconds:.3f}", row.prompt_tokens, row.output_tokens))
            count += 1
    return count


def read_csv(path: Path) -> list[TraceRow]:
    with path.open(newline="") as src:
        reader = csv.DictReader(src)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {', '.join(sorted(missing))}")
        return [TraceRow(float(r["t_seconds"]), int(r["prompt_tokens"]), int(r["output_tokens"])) for r in reader]
