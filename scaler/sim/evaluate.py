"""`keda-llm-scaler evaluate --trace FILE --out DIR`: replay a trace in virtual time and compare policies.

Each contender (`evaluation_contenders`) is replayed on its own virtual fleet, with the scaler's
own store, query and policy code and the KEDA + HPA emulator (`evaluation_replay`), and scored
(`evaluation_results`). Writes DIR/results.json (same trace, flags and seed: same bytes),
DIR/results.md and one PNG per contender plus comparison.png (`evaluation_plots`); prints the table.
The seed draws the phases of the OTLP exports, Prometheus scrapes and HPA syncs.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

from scaler.durations import parse_duration
from scaler.sim.evaluation_contenders import Contender, Envelope, contenders, describe, pod_targets
from scaler.sim.evaluation_replay import ReplayConfig, ReplayRecord, replay
from scaler.sim.evaluation_results import PolicyResult, markdown_table, results_json, score
from scaler.sim.hpa import SYNC_PERIOD
from scaler.sim.profiles import DEFAULT_PROFILE, PROFILES, HardwareProfile, profile_named
from scaler.sim.trace import TraceRow, read_csv


@dataclass(frozen=True, slots=True)
class EvaluationOptions:
    trace: Path
    out: Path
    profile: HardwareProfile
    cold_start: float
    export_interval: float
    scrape_interval: float
    ttft_slo: float
    itl_slo: float
    seed: int
    duration: float | None
    max_replicas: int
    jobs: int


def _duration(text: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be longer than 0")
    return value


def _profile(text: str) -> HardwareProfile:
    try:
        return profile_named(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keda-llm-scaler evaluate", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--trace", type=Path, required=True, help="CSV with t_seconds,prompt_tokens,output_tokens")
    add("--out", type=Path, required=True, help="directory for results.json, results.md and the plots")
    add("--profile", type=_profile, default=profile_named(DEFAULT_PROFILE), help=f"one of {', '.join(PROFILES)}")
    add("--cold-start", type=_duration, default=60.0, help="from scale-up to a pod serving [60s]")
    add("--export-interval", type=_duration, default=5.0, help="OTLP push period [5s]")
    add("--scrape-interval", type=_duration, default=15.0, help="Prometheus scrape period (kserve-seed) [15s]")
    add("--ttft-slo", type=_duration, default=2.0, help="time-to-first-token SLO [2s]")
    add("--itl-slo", type=_duration, default=0.1, help="mean inter-token latency SLO per request [100ms]")
    add("--seed", type=int, default=1, help="draws the phases of exports, scrapes and HPA syncs [1]")
    add("--duration", type=_duration, help="replay only the trace's first DURATION, e.g. 10m")
    add("--max-replicas", type=_positive_int, default=10, help="maxReplicaCount of every autoscaled pool [10]")
    add("--jobs", type=_positive_int, default=min(os.cpu_count() or 1, 5), help="contenders replayed at once")
    return parser


def options_from(argv: Sequence[str]) -> EvaluationOptions:
    args = build_parser().parse_args(argv)
    return EvaluationOptions(**{name: getattr(args, name) for name in EvaluationOptions.__dataclass_fields__})


def cut(rows: Sequence[TraceRow], duration: float | None) -> tuple[list[TraceRow], float]:
    """The rows to replay and the replay's length: `duration`, or the trace's, in whole seconds."""
    if duration is not None:
        return [r for r in rows if r.t_seconds < duration], duration
    return list(rows), float(int(rows[-1].t_seconds) + 1) if rows else 0.0


def replay_config(options: EvaluationOptions, end: float) -> ReplayConfig:
    rng = random.Random(options.seed)
    return ReplayConfig(
        end=end,
        export_interval=options.export_interval,
        scrape_interval=options.scrape_interval,
        cold_start=options.cold_start,
        export_phase=round(rng.uniform(0.0, options.export_interval), 3),
        scrape_phase=round(rng.uniform(0.0, options.scrape_interval), 3),
        hpa_phase=round(rng.uniform(0.0, SYNC_PERIOD), 3),
    )


def _replay_job(job: tuple[Contender, Sequence[TraceRow], ReplayConfig]) -> ReplayRecord:
    return replay(*job)


def replay_all(
    entries: Sequence[Contender], rows: Sequence[TraceRow], config: ReplayConfig, jobs: int
) -> list[ReplayRecord]:
    """Each contender's replay, in order; independent, so they may run in parallel processes."""
    work = [(c, rows, config) for c in entries]
    if jobs <= 1 or len(work) <= 1:
        return [_replay_job(w) for w in work]
    with ProcessPoolExecutor(min(jobs, len(work)), mp_context=get_context(_start_method())) as pool:
        return list(pool.map(_replay_job, work))


def _start_method() -> str:
    """fork when it is safe (one thread), for it imports nothing again; spawn otherwise."""
    return "fork" if "fork" in get_all_start_methods() and threading.active_count() == 1 else "spawn"


def setup_fields(
    options: EvaluationOptions, rows: Sequence[TraceRow], config: ReplayConfig, entries: Sequence[Contender]
) -> dict[str, Any]:
    targets = pod_targets(options.profile)
    return {
        "trace": str(options.trace),
        "requests": len(rows),
        "duration_s": config.end,
        "profile": options.profile.name,
        "cold_start_s": config.cold_start,
        "export_interval_s": config.export_interval,
        "scrape_interval_s": config.scrape_interval,
        "ttft_slo_s": options.ttft_slo,
        "itl_slo_s": options.itl_slo,
        "seed": options.seed,
        "phases_s": {"export": config.export_phase, "scrape": config.scrape_phase, "hpa": config.hpa_phase},
        "pod_targets": {name: getattr(targets, name) for name in targets.__dataclass_fields__},
        "contenders": {c.name: describe(c) for c in entries},
    }


@dataclass(frozen=True, slots=True)
class Evaluation:
    rows: list[TraceRow]
    end: float
    records: list[ReplayRecord]
    results: list[PolicyResult]
    setup: dict[str, Any]


def evaluate(options: EvaluationOptions) -> Evaluation:
    rows, end = cut(read_csv(options.trace), options.duration)
    if not rows:
        raise ValueError(f"{options.trace}: no requests to replay")
    config = replay_config(options, end)
    env = Envelope(options.profile, options.ttft_slo, options.itl_slo, options.max_replicas)
    entries = contenders(env, rows)
    records = replay_all(entries, rows, config, options.jobs)
    results = [score(r, options.ttft_slo, options.itl_slo) for r in records]
    return Evaluation(rows, end, records, results, setup_fields(options, rows, config, entries))


def write_outputs(options: EvaluationOptions, evaluation: Evaluation) -> str:
    """results.json, results.md and the plots in --out; returns the Markdown table."""
    from scaler.sim.evaluation_plots import plot_comparison, plot_contender  # matplotlib: only when plotting

    out, slo = options.out, options.ttft_slo
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(results_json(evaluation.results, evaluation.setup))
    table = markdown_table(evaluation.results, slo, options.itl_slo)
    (out / "results.md").write_text(_report(table, evaluation.setup))
    for record in evaluation.records:
        plot_contender(record, evaluation.rows, evaluation.end, slo, out / f"{record.contender}.png")
    plot_comparison(evaluation.records, evaluation.rows, evaluation.end, slo, out / "comparison.png")
    return table


def _report(table: str, setup: dict[str, Any]) -> str:
    static = setup["contenders"]["static"]["pools"]
    replicas = next(iter(static.values()))["replicas"]
    lines = [
        f"# Evaluation of {setup['trace']}",
        "",
        f"{setup['requests']} requests over {setup['duration_s']:g} s, profile {setup['profile']}, "
        f"cold start {setup['cold_start_s']:g} s, OTLP export every {setup['export_interval_s']:g} s, "
        f"Prometheus scrape every {setup['scrape_interval_s']:g} s, seed {setup['seed']}; "
        f"static holds {replicas} pods.",
        "",
        table,
    ]
    return "\n".join(lines)


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    try:
        options = options_from(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse: --help, or a bad flag already explained on stderr
        return exc.code if isinstance(exc.code, int) else 2
    try:
        evaluation = evaluate(options)
    except (OSError, ValueError) as exc:  # an unreadable or malformed trace
        print(f"keda-llm-scaler evaluate: error: {exc}", file=sys.stderr)
        return 1
    table = write_outputs(options, evaluation)
    print(table, end="")
    print(f"wrote {options.out / 'results.json'}, results.md and {len(evaluation.records) + 1} plots")
    return 0
