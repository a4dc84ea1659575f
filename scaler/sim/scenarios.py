"""Named stress traces: a base trace (`trace.TraceShape`) plus scheduled episodes, seeded.

An episode adds its own arrivals on top of the base: `extra_rps` requests per second, plus
`multiplier - 1` times the base's diurnal rate, ramped in and out linearly over `ramp` seconds, with
its own prompt and output lengths. Each stream draws from its own seeded generator, so a scenario
and its seed give the same rows; `load/tracegen.py --all load/traces` writes every shipped one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from scaler.sim.trace import TraceRow, TraceShape, diurnal_rate, generate, lognormal_tokens

FLASH_CROWD, LONG_PROMPTS, LONG_GENERATIONS = "flash-crowd", "long-prompts", "long-generations"


@dataclass(frozen=True, slots=True)
class Lengths:
    """Log-normal prompt and output lengths (medians and sigmas), prompt + output within a cap."""

    prompt_median: float = 512.0
    prompt_sigma: float = 1.0
    output_median: float = 200.0
    output_sigma: float = 0.8
    max_total_tokens: int = 4096


@dataclass(frozen=True, slots=True)
class Episode:
    kind: str  # FLASH_CROWD, LONG_PROMPTS or LONG_GENERATIONS: what the targets look for
    start: float  # seconds into the trace
    seconds: float  # how long it lasts, ramps included
    multiplier: float = 1.0  # adds (multiplier - 1) x the base's diurnal rate
    extra_rps: float = 0.0  # adds this many requests per second
    ramp: float = 0.0  # seconds to reach full rate, and to fade out at the end
    lengths: Lengths | None = None  # None: the base trace's lengths

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def envelope(self, t: float) -> float:
        """0..1: how much of the episode is on at `t`."""
        if not self.start <= t < self.end:
            return 0.0
        if self.ramp <= 0:
            return 1.0
        return min(1.0, (t - self.start) / self.ramp, (self.end - t) / self.ramp)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    base: TraceShape
    episodes: tuple[Episode, ...] = field(default_factory=tuple)
    seed: int = 1

    def episode(self, kind: str) -> Episode | None:
        return next((e for e in self.episodes if e.kind == kind), None)


def _base_lengths(shape: TraceShape) -> Lengths:
    return Lengths(
        shape.prompt_median, shape.prompt_sigma, shape.output_median, shape.output_sigma, shape.max_total_tokens
    )


def episode_rows(base: TraceShape, episode: Episode, rng: random.Random) -> Iterator[TraceRow]:
    """The episode's own arrivals: thinning against its peak rate, lengths from its own mix."""
    lengths = episode.lengths or _base_lengths(base)

    def rate(t: float) -> float:
        extra = episode.extra_rps + (episode.multiplier - 1.0) * diurnal_rate(base, t)
        return episode.envelope(t) * extra

    peak = episode.extra_rps + (episode.multiplier - 1.0) * base.base_rps * (1.0 + base.amplitude)
    if peak <= 0:
        return
    t = episode.start
    while True:
        t += rng.expovariate(peak)
        if t >= min(episode.end, base.hours * 3600.0):
            return
        if rng.random() * peak > rate(t):
            continue
        prompt = lognormal_tokens(rng, lengths.prompt_median, lengths.prompt_sigma, lengths.max_total_tokens - 1)
        output = lognormal_tokens(rng, lengths.output_median, lengths.output_sigma, lengths.max_total_tokens - prompt)
        yield TraceRow(round(t, 3), prompt, output)


def scenario_rows(scenario: Scenario) -> list[TraceRow]:
    """The base trace and every episode merged by arrival time (ties: the base first, then episode order)."""
    streams = [list(generate(scenario.base, scenario.seed))]
    for i, episode in enumerate(scenario.episodes):
        rng = random.Random(f"{scenario.seed}/{i}/{episode.kind}")  # str seeds hash the same in every process
        streams.append(list(episode_rows(scenario.base, episode, rng)))
    tagged = [(row.t_seconds, n, i, row) for n, rows in enumerate(streams) for i, row in enumerate(rows)]
    return [row for *_, row in sorted(tagged, key=lambda x: x[:3])]


# -- the shipped stress traces (A100-80G-llama3-8b: ~9 requests/s of the base mix per pod) ----------

_STEADY = TraceShape(hours=0.5, base_rps=6.0, amplitude=0.0, bursts_per_hour=0.0)
RAG_PROMPTS = Lengths(prompt_median=3000.0, prompt_sigma=0.25, output_median=150.0, output_sigma=0.5)
LONG_REPLIES = Lengths(prompt_median=300.0, prompt_sigma=0.6, output_median=1500.0, output_sigma=0.35)
# Heavier chat (longer prompts and replies) so a day compressed into 90 minutes needs five A100s at
# its peak and stays small in git; the cycle is the trace's length, night at both ends.
DAY_CHAT = TraceShape(
    hours=1.5,
    base_rps=7.0,
    amplitude=0.9,
    bursts_per_hour=0.0,
    prompt_median=1500.0,
    prompt_sigma=0.7,
    output_median=350.0,
    output_sigma=0.6,
)


def _crowd(start: float) -> Episode:
    return Episode(FLASH_CROWD, start, 300.0, multiplier=5.0, ramp=10.0)


def _long_prompts(start: float) -> Episode:
    return Episode(LONG_PROMPTS, start, 600.0, extra_rps=5.0, ramp=30.0, lengths=RAG_PROMPTS)


def _long_generations(start: float) -> Episode:
    return Episode(LONG_GENERATIONS, start, 600.0, extra_rps=6.0, ramp=30.0, lengths=LONG_REPLIES)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("diurnal", "a 90-minute day of heavier chat, 0.7 to 13.3 requests/s, no bursts", DAY_CHAT),
        Scenario("flash-crowd", "6 requests/s, then x5 within 10 s at 10 min, for 5 min", _STEADY, (_crowd(600.0),)),
        Scenario(
            "long-prompt-burst",
            "6 requests/s, plus 5 requests/s of ~3,000-token RAG prompts from 10 to 20 min",
            _STEADY,
            (_long_prompts(600.0),),
        ),
        Scenario(
            "long-generation-burst",
            "6 requests/s, plus 6 requests/s of ~1,500-token replies from 10 to 20 min",
            _STEADY,
            (_long_generations(600.0),),
        ),
        Scenario(
            "mixed-day",
            "a two-hour diurnal day (3 to 9 requests/s) with a flash crowd, a long-prompt and a long-generation burst",
            replace(_STEADY, hours=2.0, amplitude=0.5),
            (_crowd(1800.0), _long_prompts(3600.0), _long_generations(5400.0)),
        ),
    )
}


def scenario_for(trace: Path) -> Scenario | None:
    """The shipped scenario a trace file is named after (`load/traces/<name>.csv`), if any."""
    return SCENARIOS.get(trace.stem)
