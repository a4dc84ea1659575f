"""Memory benchmark: bytes per retained sample and per series held by the scaler's Store.

Each fleet size runs in a fresh process, which feeds `scaler.store.Store` in virtual time (the core
takes `now` as an argument) with the decoded requests of bench_ingest's payloads. The first push is
decoded afresh, so the store owns its label objects as it does in the server; later pushes replay
decoded samples. Memory is read with tracemalloc (live Python bytes, exact) and as the RSS delta
(what the kernel charges, with fragmentation). Rows held per series go up and down as the ring
buffers compact, so the figures are taken at every push over one whole compaction cycle after the
buffers fill: the mean is what a fleet whose pods started at different times holds, the peak what
a fleet pushing in lockstep reaches. The baseline is the packed floor: 8 bytes per float64 of each
retained row (time, value or count, sum and buckets).

    python load/bench_memory.py            # 1k and 10k pods (several minutes)
    python load/bench_memory.py --smoke    # a few seconds
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import time
import tracemalloc
from dataclasses import dataclass, replace
from statistics import fmean

import psutil
from bench_ingest import core_decoder
from otlp_payloads import SERIES_PER_POD, Batches, fleet

from scaler.otlp import read_protobuf
from scaler.store import Store

TARGET_BYTES_PER_SAMPLE = 64
PODS_PER_REQUEST = 100


@dataclass(frozen=True)
class Case:
    pods: int
    interval: float  # seconds between a pod's pushes
    retention: float  # the store's --retention
    trace: bool  # tracemalloc on (about 4x slower to fill)
    by_line: int = 0  # with trace: the top source lines of the store's memory, mid-cycle


@dataclass(frozen=True)
class Result:
    case: Case
    series: int
    retained: int  # samples held in steady state
    floor: float  # packed bytes per retained sample
    traced_series: float | None  # bytes per series with one sample each
    traced_mean: float | None  # bytes per retained sample, mean over a compaction cycle
    traced_peak: float | None
    rss_series: float
    rss_peak: float  # RSS delta per retained sample at the end (RSS rarely shrinks)
    fill_seconds: float  # to fill the store, in the last run
    lines: str = ""

    @property
    def headline(self) -> float:
        """The judged figure: tracemalloc's cycle mean, else the RSS delta."""
        return self.traced_mean if self.traced_mean is not None else self.rss_peak


def measure(case: Case) -> Result:
    """Fill a Store with `case.pods` pods for one compaction cycle past full retention."""
    batches = Batches(fleet(case.pods)).requests(PODS_PER_REQUEST)
    throwaway = core_decoder()  # the replayed samples' labels must not be the ones the store keeps
    replay = [throwaway(read_protobuf(body)).samples for body in batches]
    floor = fmean(8 * (1 + (2 + len(s.histogram.buckets) if s.histogram else 1)) for s in replay[0])
    process = psutil.Process()
    gc.collect()
    rss0 = process.memory_info().rss
    if case.trace:
        tracemalloc.start()
    store = Store(case.retention, max_series=10**9)
    decode = core_decoder()  # and its label cache, if any: held by the receiver for as long as the store
    started = time.perf_counter()
    for body in batches:  # the first push, decoded afresh: the store keeps these label objects
        store.append(decode(read_protobuf(body)).samples, 0.0)
    gc.collect()
    series = len(store)
    traced_series = _traced() / series if case.trace else None
    rss_series = (process.memory_info().rss - rss0) / series
    kept = int(case.retention / case.interval) + 1  # rows at or after now - retention
    traced: list[int] = []
    lines = ""
    swept = 0.0
    for tick in range(1, 2 * kept + 1):
        now = tick * case.interval
        for samples in replay:
            store.append(samples, now)
        if now - swept >= case.retention / 4:  # as the server's housekeeping sweeps: every quarter retention
            store.sweep(now)
            swept = now
        if tick >= kept and case.trace:
            traced.append(_traced())
        if tick == kept + kept // 2 and case.by_line and case.trace:
            lines = _by_line(tracemalloc.take_snapshot(), case.by_line, store)
    fill_seconds = time.perf_counter() - started
    retained = store.stats(2 * kept * case.interval, stale_after=float("inf")).samples
    rss_peak = (process.memory_info().rss - rss0) / retained
    del decode  # kept alive until here, as the receiver keeps it
    if case.trace:
        tracemalloc.stop()
    cycle = traced[:kept]  # pushes kept .. 2*kept-1: one compaction cycle
    return Result(
        case,
        series,
        retained,
        floor,
        traced_series,
        fmean(cycle) / retained if traced else None,
        max(traced) / retained if traced else None,
        rss_series,
        rss_peak,
        fill_seconds,
        lines,
    )


def _by_line(snapshot: tracemalloc.Snapshot, top: int, store: Store) -> str:
    samples, series = store.stats(float("inf"), float("inf")).samples, len(store)
    out = [f"    tracemalloc mid-cycle, top {top} source lines: B/sample  B/series  blocks  line"]
    for stat in snapshot.statistics("lineno")[:top]:
        frame = stat.traceback[0]
        where = frame.filename.split("/site-packages/")[-1].split("/work/main/")[-1]
        out.append(f"    {stat.size / samples:8.1f} {stat.size / series:9.0f} {stat.count:7,} {where}:{frame.lineno}")
    return "\n".join(out)


def _traced() -> int:
    return tracemalloc.get_traced_memory()[0]


def run_isolated(case: Case) -> Result:
    """Measure in fresh processes, so that neither heap nor RSS carries anything over.

    RSS comes from a run without tracemalloc, whose own bookkeeping would swell it.
    """
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        plain = pool.apply(measure, (replace(case, trace=False),))
    if not case.trace:
        return plain
    with context.Pool(1) as pool:
        traced = pool.apply(measure, (case,))
    return replace(traced, rss_series=plain.rss_series, rss_peak=plain.rss_peak)


def _cases(args: argparse.Namespace) -> list[Case]:
    if args.smoke:
        return [Case(20, 1.0, 10.0, True), Case(60, 1.0, 10.0, False)]
    return [Case(p, args.interval, args.retention, p <= args.trace_up_to, args.by_line) for p in args.pods]


def _bytes(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=lambda s: [int(p) for p in s.split(",")], default=[1000, 10000])
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between pushes [KServe's scrape: 5]")
    parser.add_argument("--retention", type=float, default=120.0, help="the store's retention [120]")
    parser.add_argument("--trace-up-to", type=int, default=1000, help="tracemalloc for fleets up to this size")
    parser.add_argument("--by-line", type=int, default=0, help="show the top N source lines of traced memory")
    parser.add_argument("--smoke", action="store_true", help="tiny fleets, a few seconds")
    args = parser.parse_args()
    print(f"memory: {SERIES_PER_POD} series per pod; store fed in virtual time; one process per size")
    results = [run_isolated(case) for case in _cases(args)]
    header = (
        f"{'pods':>6} {'series':>8} {'every':>5} {'kept':>4} {'retained':>11} {'B/series':>8} {'RSS B/ser':>9} "
        f"{'B/sample':>8} {'peak':>6} {'RSS B/smp':>9} {'floor':>5} {'x floor':>7} {'x target':>8} {'fill s':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        kept = int(r.case.retention / r.case.interval) + 1
        print(
            f"{r.case.pods:>6} {r.series:>8,} {r.case.interval:>4g}s {kept:>4} {r.retained:>11,} "
            f"{_bytes(r.traced_series):>8} {_bytes(r.rss_series):>9} {_bytes(r.traced_mean):>8} "
            f"{_bytes(r.traced_peak):>6} {_bytes(r.rss_peak):>9} {r.floor:>5.0f} {r.headline / r.floor:>6.2f}x "
            f"{r.headline / TARGET_BYTES_PER_SAMPLE:>7.2f}x {r.fill_seconds:>6.1f}"
        )
    for r in results:
        if r.lines:
            print(f"  {r.case.pods:,} pods:\n{r.lines}")
    print(
        "B/series: tracemalloc, each series holding one sample. B/sample: tracemalloc per retained sample, mean "
        "over one compaction cycle; peak: its max. RSS: delta from before the store, without tracemalloc. "
        "floor: packed float64 rows. x floor, x target: B/sample (RSS where not traced)."
    )
    met = all(r.headline <= TARGET_BYTES_PER_SAMPLE for r in results)
    parts = "; ".join(
        f"{r.case.pods:,} pods {r.headline:,.0f} B/sample = {r.headline / r.floor:.2f}x floor "
        f"({r.headline / TARGET_BYTES_PER_SAMPLE:.2f}x target), {_bytes(r.traced_series or r.rss_series)} B/series"
        for r in results
    )
    print(f"SUMMARY memory: {parts}; target <= {TARGET_BYTES_PER_SAMPLE} B/sample: {'MET' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
