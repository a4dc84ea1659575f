"""Plots of an evaluation (matplotlib, Agg, no pyplot state): per trace, one figure per contender, one
comparison, and with a sweep the Pareto frontiers.

Per contender: offered load, replicas per pool (ready pods dashed) and the p90 TTFT of each
minute's arrivals against the SLO. Requests that failed or never finished count as infinitely slow
and are drawn at the top of the TTFT axis. The Pareto plot shows GPU-seconds against TTFT
attainment, every point faint and each family's frontier drawn through its points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from scaler.sim.evaluation_results import PLOT_BIN, Digest
from scaler.sim.evaluation_targets import Point, pareto_front
from scaler.sim.trace import TraceRow

BIN = PLOT_BIN  # seconds per point of the load and TTFT curves
TTFT_CEILING = 60.0  # where infinitely slow minutes are drawn


def offered_load(rows: Sequence[TraceRow], end: float, width: float = BIN) -> tuple[list[float], list[float]]:
    """(minute, requests per second) at the start of each bin of `width` seconds, and once more at `end`."""
    bins = max(1, math.ceil(end / width))
    counts = [0] * bins
    for row in rows:
        counts[min(bins - 1, int(row.t_seconds // width))] += 1
    rates = [c / width for c in counts]
    return [i * width / 60.0 for i in range(bins)] + [end / 60.0], rates + rates[-1:]


def ttft_p90(digest: Digest) -> tuple[list[float], list[float]]:
    """(minute, p90 TTFT of that bin's arrivals) at the middle of each bin, capped at the ceiling."""
    minutes = [(t + BIN / 2) / 60.0 for t, _ in digest.ttft_minutes]
    return minutes, [min(TTFT_CEILING, v) for _, v in digest.ttft_minutes]


def _load_panel(ax: Axes, rows: Sequence[TraceRow], end: float) -> None:
    minutes, rps = offered_load(rows, end)
    ax.step(minutes, rps, where="post", color="tab:gray")
    ax.set_ylabel("offered load\n(requests/s)")
    ax.grid(alpha=0.3)


def _ttft_axes(ax: Axes, ttft_slo: float) -> None:
    ax.axhline(ttft_slo, color="tab:red", linestyle=":", label=f"SLO {ttft_slo:g}s")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("p90 TTFT (s)\nper minute")
    ax.set_xlabel("minutes")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize="small")


def _replica_axes(ax: Axes, label: str, peak: int) -> None:
    ax.set_ylabel(label)
    ax.set_ylim(0, peak * 1.3 + 1)  # room for the legend above the curves
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _new_figure(title: str) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(11, 8))  # fixed margins: constrained layout would double the drawing time
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True, height_ratios=(1, 1.4, 1.2))
    fig.subplots_adjust(left=0.09, right=0.98, top=0.95, bottom=0.07, hspace=0.08)
    fig.suptitle(title)
    return fig, list(axes)


def plot_contender(record: Digest, rows: Sequence[TraceRow], end: float, ttft_slo: float, path: Path) -> None:
    fig, (load, replicas, ttft) = _new_figure(f"{record.contender}: load, replicas and TTFT")
    _load_panel(load, rows, end)
    times = [p.t / 60.0 for p in record.timeline]
    for i, deployment in enumerate(record.deployments):
        line = replicas.step(times, [p.replicas[i] for p in record.timeline], where="post", label=deployment)
        color = line[0].get_color()
        replicas.step(times, [p.ready[i] for p in record.timeline], where="post", color=color, linestyle="--")
    _replica_axes(replicas, "replicas\n(dashed: ready)", max((max(p.replicas) for p in record.timeline), default=1))
    replicas.legend(loc="upper left", fontsize="small")
    ttft.plot(*ttft_p90(record), color="tab:blue", label="p90 TTFT")
    _ttft_axes(ttft, ttft_slo)
    fig.savefig(path, dpi=100)


def plot_comparison(
    records: Sequence[Digest], rows: Sequence[TraceRow], end: float, ttft_slo: float, path: Path
) -> None:
    fig, (load, replicas, ttft) = _new_figure("all policies: load, pods held and TTFT")
    _load_panel(load, rows, end)
    for record in records:
        times = [p.t / 60.0 for p in record.timeline]
        line = replicas.step(times, [sum(p.replicas) for p in record.timeline], where="post", label=record.contender)
        ttft.plot(*ttft_p90(record), color=line[0].get_color(), label=record.contender)
    peak = max((sum(p.replicas) for r in records for p in r.timeline), default=1)
    _replica_axes(replicas, "replicas\n(all pools)", peak)
    replicas.legend(loc="upper left", fontsize="small", ncol=len(records))
    _ttft_axes(ttft, ttft_slo)
    fig.savefig(path, dpi=100)


def plot_pareto(points: Sequence[Point], ttft_slo: float, title: str, path: Path) -> None:
    """GPU-seconds against TTFT attainment: every point, and one frontier per family."""
    fig = Figure(figsize=(9, 6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.1, right=0.98, top=0.93, bottom=0.1)
    families = sorted({p.family for p in points})
    for family in families:
        mine = [p for p in points if p.family == family]
        front = pareto_front(mine)
        line = ax.plot([p.gpu_seconds for p in front], [100 * p.ttft for p in front], marker="o", label=family)
        color = line[0].get_color()
        ax.scatter([p.gpu_seconds for p in mine], [100 * p.ttft for p in mine], color=color, alpha=0.3, s=18)
        for p in front:
            ax.annotate(f"{p.value:g}", (p.gpu_seconds, 100 * p.ttft), fontsize="x-small", color=color,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("GPU-seconds (log)")
    ax.set_ylabel(f"requests with TTFT <= {ttft_slo:g}s (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(title)
    fig.savefig(path, dpi=100)
