"""`keda-llm-scaler evaluate --trace FILE... --out DIR [--sweep]`: replay traces in virtual time and compare policies.

Each contender (`evaluation_contenders`) is replayed on its own virtual fleet, with the scaler's
own store, query and policy code and the KEDA + HPA emulator (`evaluation_replay`), and scored
(`evaluation_results`). With --sweep every contender is also replayed at each value of its knob.
Writes DIR/results.json (same traces, flags and seed: same bytes) with one section per trace and
the targets' verdicts (`evaluation_targets`), DIR/results.md, and per trace DIR/<trace>/ with one
PNG per contender, comparison.png and pareto.png (`evaluation_plots`); prints the tables and the
verdicts. The seed draws the phases of the OTLP exports, Prometheus scrapes and HPA syncs.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

from scaler.durations import parse_duration
from scaler.errors import ScalerError
from scaler.sim.evaluation_contenders import FAMILIES, Contender, Envelope, contenders, describe, pod_targets
from scaler.sim.evaluation_replay import ReplayConfig, replay
from scaler.sim.evaluation_report import (
    points_of,
    report_markdown,
    sweep_lines,
    targets_section,
    trace_section,
    verdict_lines,
)
from scaler.sim.evaluation_results import Digest, digest, document_json, markdown_table
from scaler.sim.hpa import SYNC_PERIOD
from scaler.sim.profiles import DEFAULT_PROFILE, PROFILES, HardwareProfile, profile_named
from scaler.sim.scenarios import Scenario, scenario_for
from scaler.sim.trace import TraceRow, read_csv


@dataclass(frozen=True, slots=True)
class EvaluationOptions:
    traces: tuple[Path, ...]
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
    sweep: Sweep | None  # None: each family at its default only
    gateway_demand: bool


Sweep = tuple[tuple[str, tuple[float, ...]], ...]  # (family, values); empty: every family over its own


def _sweep_spec(text: str) -> tuple[str, tuple[float, ...]]:
    """`FAMILY=V1,V2,...`: sweep that family over these values (the others stay at their defaults)."""
    family, _, values = text.partition("=")
    known = [f.name for f in FAMILIES]
    if family not in known:
        raise argparse.ArgumentTypeError(f"{family!r} is not one of {', '.join(known)}")
    try:
        parsed = tuple(float(v) for v in values.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: want FAMILY=number,number,...") from None
    if not parsed:
        raise argparse.ArgumentTypeError(f"{text!r}: want FAMILY=number,number,...")
    return family, parsed


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
    add("--trace", dest="traces", type=Path, nargs="+", action="extend", required=True, metavar="FILE",
        help="CSVs with t_seconds,prompt_tokens,output_tokens; one results section each")  # fmt: skip
    add("--out", type=Path, required=True, help="directory for results.json, results.md and the plots")
    add("--sweep", type=_sweep_spec, nargs="*", metavar="FAMILY=V,...",
        help="replay every contender at each value of its knob (or only the families and values given), "
        "with Pareto plots")  # fmt: skip
    add("--no-gateway-demand", dest="gateway_demand", action="store_false",
        help="ours without the gateway's queue (demandQuery) and its flow control")  # fmt: skip
    add("--profile", type=_profile, default=profile_named(DEFAULT_PROFILE), help=f"one of {', '.join(PROFILES)}")
    add("--cold-start", type=_duration, default=60.0, help="from scale-up to a pod serving [60s]")
    add("--export-interval", type=_duration, default=5.0, help="OTLP push period [5s]")
    add("--scrape-interval", type=_duration, default=15.0, help="Prometheus scrape period (kserve-seed) [15s]")
    add("--ttft-slo", type=_duration, default=2.0, help="time-to-first-token SLO [2s]")
    add("--itl-slo", type=_duration, default=0.1, help="mean inter-token latency SLO per request [100ms]")
    add("--seed", type=int, default=1, help="draws the phases of exports, scrapes and HPA syncs [1]")
    add("--duration", type=_duration, help="replay only each trace's first DURATION, e.g. 10m")
    add("--max-replicas", type=_positive_int, default=10, help="maxReplicaCount of every autoscaled pool [10]")
    add("--jobs", type=_positive_int, default=os.cpu_count() or 1, help="replays run at once [the CPU count]")
    return parser


def options_from(argv: Sequence[str]) -> EvaluationOptions:
    args = build_parser().parse_args(argv)
    args.traces = tuple(args.traces)
    args.sweep = None if args.sweep is None else tuple(args.sweep)
    return EvaluationOptions(**{name: getattr(args, name) for name in EvaluationOptions.__dataclass_fields__})


def cut(rows: Sequence[TraceRow], duration: float | None) -> tuple[list[TraceRow], float]:
    """The rows to replay and the replay's length: `duration`, or the trace's, in whole seconds."""
    if duration is not None:
        return [r for r in rows if r.t_seconds < duration], duration
    return list(rows), float(int(rows[-1].t_seconds) + 1) if rows else 0.0


@functools.lru_cache(maxsize=16)
def load(path: Path, duration: float | None) -> tuple[tuple[TraceRow, ...], float]:
    """A trace's rows to replay, read once per process (forked workers inherit the parent's)."""
    rows, end = cut(read_csv(path), duration)
    return tuple(rows), end


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


@dataclass(frozen=True, slots=True)
class TraceRun:
    name: str  # the file's stem: the results section and the plots' directory
    path: Path
    rows: tuple[TraceRow, ...]
    end: float
    config: ReplayConfig
    entries: tuple[Contender, ...]
    scenario: Scenario | None


@dataclass(frozen=True, slots=True)
class Job:
    path: Path
    duration: float | None
    contender: Contender
    config: ReplayConfig
    ttft_slo: float
    itl_slo: float


def run_job(job: Job) -> Digest:
    rows, end = load(job.path, job.duration)
    c = job.contender
    record = replay(c, rows, job.config)
    return digest(record, c.knob, c.value, c.default, end, job.ttft_slo, job.itl_slo)


_COST = {"ours-pd": 1.6, "kserve-seed": 1.5, "kedify-vllm-example": 1.6}  # relative replay time, for ordering


def replay_all(jobs: Sequence[Job], workers: int) -> list[Digest]:
    """Each job's digest, in order; independent, so they run in parallel processes, longest first."""
    if workers <= 1 or len(jobs) <= 1:
        return [run_job(j) for j in jobs]
    order = sorted(range(len(jobs)), key=lambda i: -len(load(jobs[i].path, jobs[i].duration)[0]) * _cost(jobs[i]))
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context(_start_method())) as pool:
        futures: dict[int, Future[Digest]] = {i: pool.submit(run_job, jobs[i]) for i in order}
        return [futures[i].result() for i in range(len(jobs))]


def _cost(job: Job) -> float:
    return _COST.get(job.contender.name, 1.0)


def _start_method() -> str:
    """fork when it is safe (one thread), for it imports nothing again; spawn otherwise."""
    return "fork" if "fork" in get_all_start_methods() and threading.active_count() == 1 else "spawn"


def trace_runs(options: EvaluationOptions, env: Envelope) -> list[TraceRun]:
    runs: list[TraceRun] = []
    for path in options.traces:
        if any(r.name == path.stem for r in runs):
            raise ValueError(f"{path}: another trace is named {path.stem!r} too; results are kept by file name")
        rows, end = load(path, options.duration)
        if not rows:
            raise ValueError(f"{path}: no requests to replay")
        entries = contenders(env, rows, sweep_values(options.sweep))
        runs.append(TraceRun(path.stem, path, rows, end, replay_config(options, end), entries, scenario_for(path)))
    return runs


def setup_fields(options: EvaluationOptions, run: TraceRun) -> dict[str, Any]:
    config = run.config
    return {
        "trace": str(run.path),
        "scenario": None if run.scenario is None else run.scenario.summary,
        "requests": len(run.rows),
        "duration_s": config.end,
        "phases_s": {"export": config.export_phase, "scrape": config.scrape_phase, "hpa": config.hpa_phase},
        "contenders": {c.name: describe(c) for c in run.entries if c.default},
    }


def sweep_values(sweep: Sweep | None) -> tuple[tuple[float, ...], ...]:
    """Per family (in FAMILIES order), the values to replay beside its default."""
    if sweep is None:
        return tuple(() for _ in FAMILIES)
    if not sweep:
        return tuple(f.sweep for f in FAMILIES)
    chosen = dict(sweep)
    return tuple(chosen.get(f.name, ()) for f in FAMILIES)


def common_setup(options: EvaluationOptions) -> dict[str, Any]:
    targets = pod_targets(options.profile)
    swept = sweep_values(options.sweep)
    return {
        "profile": options.profile.name,
        "cold_start_s": options.cold_start,
        "export_interval_s": options.export_interval,
        "scrape_interval_s": options.scrape_interval,
        "ttft_slo_s": options.ttft_slo,
        "itl_slo_s": options.itl_slo,
        "seed": options.seed,
        "max_replicas": options.max_replicas,
        "sweep": options.sweep is not None,
        "gateway_demand": options.gateway_demand,
        "knobs": {f.name: {"knob": f.knob, "values": list(v)} for f, v in zip(FAMILIES, swept, strict=True)},
        "pod_targets_at_profile_headroom": {name: getattr(targets, name) for name in targets.__dataclass_fields__},
    }


@dataclass(frozen=True, slots=True)
class TraceEvaluation:
    run: TraceRun
    digests: tuple[Digest, ...]

    @property
    def defaults(self) -> list[Digest]:
        return [d for d in self.digests if d.default]


@dataclass(frozen=True, slots=True)
class Evaluation:
    traces: tuple[TraceEvaluation, ...]
    document: dict[str, Any]  # results.json
    seconds: float = 0.0  # wall time of the replays (not in results.json, which stays byte-stable)


def evaluate(options: EvaluationOptions) -> Evaluation:
    env = Envelope(
        options.profile,
        options.ttft_slo,
        options.itl_slo,
        options.max_replicas,
        options.gateway_demand,
        options.cold_start,
    )
    runs = trace_runs(options, env)
    jobs = [
        Job(run.path, options.duration, c, run.config, options.ttft_slo, options.itl_slo)
        for run in runs
        for c in run.entries
    ]
    started = time.monotonic()
    digests = iter(replay_all(jobs, options.jobs))
    seconds = time.monotonic() - started
    traces = tuple(TraceEvaluation(run, tuple(next(digests) for _ in run.entries)) for run in runs)
    sections = {
        t.run.name: trace_section(setup_fields(options, t.run), t.digests, t.run.scenario, options.ttft_slo)
        for t in traces
    }
    scenarios = {t.run.name: t.run.scenario for t in traces}
    document = {
        "setup": common_setup(options),
        "traces": sections,
        "targets": targets_section(sections, scenarios, options.cold_start),
    }
    return Evaluation(traces, document, seconds)


def write_outputs(options: EvaluationOptions, evaluation: Evaluation) -> str:
    """results.json, results.md and the plots in --out; returns the report's text."""
    from scaler.sim.evaluation_plots import plot_comparison, plot_contender, plot_pareto  # matplotlib: when plotting

    out, slo = options.out, options.ttft_slo
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(document_json(evaluation.document))
    report = report_markdown(evaluation.document, {t.run.name: t.digests for t in evaluation.traces})
    (out / "results.md").write_text(report)
    for t in evaluation.traces:
        folder = out / t.run.name
        folder.mkdir(exist_ok=True)
        for d in t.defaults:
            plot_contender(d, t.run.rows, t.run.end, slo, folder / f"{d.contender}.png")
        plot_comparison(t.defaults, t.run.rows, t.run.end, slo, folder / "comparison.png")
        title = f"{t.run.name}: GPU-seconds against TTFT attainment"
        plot_pareto(points_of(t.digests), slo, title, folder / "pareto.png")
    return report


def plots_per_trace(evaluation: Evaluation) -> int:
    return sum(len(t.defaults) + 2 for t in evaluation.traces)


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    try:
        options = options_from(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse: --help, or a bad flag already explained on stderr
        return exc.code if isinstance(exc.code, int) else 2
    try:
        evaluation = evaluate(options)
    except (OSError, ValueError, ScalerError) as exc:  # an unreadable or malformed trace, a trigger refused
        print(f"keda-llm-scaler evaluate: error: {exc}", file=sys.stderr)
        return 1
    write_outputs(options, evaluation)
    for t in evaluation.traces:
        print(f"## {t.run.name}: {len(t.run.rows)} requests over {t.run.end:g} s")
        print(markdown_table([d.result for d in t.defaults], options.ttft_slo, options.itl_slo), end="")
        if options.sweep is not None:
            print("\n".join(sweep_lines(evaluation.document["traces"][t.run.name])))
        print()
    for line in verdict_lines(evaluation.document["targets"]):
        print(line)
    points = sum(len(t.digests) for t in evaluation.traces)
    print(
        f"replayed {points} points of {len(evaluation.traces)} traces in {evaluation.seconds:.0f} s "
        f"(--jobs {options.jobs}); wrote {options.out / 'results.json'}, results.md and "
        f"{plots_per_trace(evaluation)} plots"
    )
    return 0
