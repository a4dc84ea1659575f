"""What a replay scored: SLO attainment, latency percentiles, GPU time and scale events; JSON and Markdown.

Every request of the trace counts. One that failed (no ready pod, aborted by a scale-down) or was
still running at the cut-off misses both SLOs and ranks as infinitely slow in the percentiles; a
percentile that lands on such a request is reported as null ("—"). A `Digest` is what a replay
leaves for the report (score, pods over time, p90 TTFT per bin of arrivals), small enough to send
back from a worker process.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scaler.sim.evaluation_replay import ReplayRecord, TimelinePoint
from scaler.sim.virtual_fleet import Outcome

FINE_BIN = 10.0  # seconds of arrivals per p90 TTFT figure, for the recovery after a flash crowd
PLOT_BIN = 60.0  # the same, per point of the plots


def request_itl(outcome: Outcome) -> float | None:
    """Mean inter-token latency of one served request (TPOT); None with fewer than two tokens."""
    if not outcome.ok or outcome.first_token is None or outcome.output_tokens < 2:
        return None
    return (outcome.finish - outcome.first_token) / (outcome.output_tokens - 1)


def nearest_rank(values: Iterable[float], q: float) -> float | None:
    """The q-quantile by nearest rank (no interpolation, so infinities stay put); None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class PoolUse:
    deployment: str
    mean_replicas: float
    peak_replicas: int


@dataclass(frozen=True, slots=True)
class PolicyResult:
    name: str
    ttft_slo_attainment: float
    itl_slo_attainment: float
    gpu_seconds: float
    scale_events: int
    p95_ttft_s: float | None
    p95_itl_s: float | None
    requests: int
    failed: int  # no ready pod, aborted, or unfinished at the cut-off
    pools: tuple[PoolUse, ...]


def score(record: ReplayRecord, ttft_slo: float, itl_slo: float) -> PolicyResult:
    unfinished = record.requests - len(record.outcomes)
    ttfts = [o.ttft if o.ok and o.ttft is not None else math.inf for o in record.outcomes]
    itls = [math.inf if not o.ok else request_itl(o) for o in record.outcomes]
    ttft_met = sum(1 for t in ttfts if t <= ttft_slo)
    itl_met = sum(1 for o, i in zip(record.outcomes, itls, strict=True) if o.ok and (i is None or i <= itl_slo))
    total = max(record.requests, 1)
    return PolicyResult(
        name=record.contender,
        ttft_slo_attainment=ttft_met / total,
        itl_slo_attainment=itl_met / total,
        gpu_seconds=record.gpu_seconds,
        scale_events=len(record.scale_events),
        p95_ttft_s=_finite(nearest_rank(ttfts + [math.inf] * unfinished, 0.95)),
        p95_itl_s=_finite(nearest_rank([i for i in itls if i is not None] + [math.inf] * unfinished, 0.95)),
        requests=record.requests,
        failed=unfinished + sum(1 for o in record.outcomes if not o.ok),
        pools=pool_use(record),
    )


def pool_use(record: ReplayRecord) -> tuple[PoolUse, ...]:
    out = []
    for i, deployment in enumerate(record.deployments):
        counts = [p.replicas[i] for p in record.timeline]
        mean = math.fsum(counts) / len(counts) if counts else 0.0
        out.append(PoolUse(deployment, mean, max(counts, default=0)))
    return tuple(out)


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def result_fields(result: PolicyResult) -> dict[str, Any]:
    return {
        "ttft_slo_attainment": _rounded(result.ttft_slo_attainment),
        "itl_slo_attainment": _rounded(result.itl_slo_attainment),
        "gpu_seconds": _rounded(result.gpu_seconds, 1),
        "scale_events": result.scale_events,
        "p95_ttft_s": _rounded(result.p95_ttft_s),
        "p95_itl_s": _rounded(result.p95_itl_s),
        "requests": result.requests,
        "failed": result.failed,
        "pools": {
            p.deployment: {"mean_replicas": round(p.mean_replicas, 2), "peak_replicas": p.peak_replicas}
            for p in result.pools
        },
    }


def ttft_p90_bins(outcomes: Iterable[Outcome], width: float, end: float) -> tuple[tuple[float, float], ...]:
    """(bin start, p90 TTFT) of each `width` seconds of arrivals before `end`; a failure counts as +inf."""
    by_bin: dict[int, list[float]] = defaultdict(list)
    for o in outcomes:
        by_bin[int(o.arrival // width)].append(o.ttft if o.ok and o.ttft is not None else math.inf)
    out = []
    for i in sorted(by_bin):
        if i * width < end:
            value = nearest_rank(by_bin[i], 0.9)
            out.append((i * width, math.inf if value is None else value))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Digest:
    contender: str
    knob: str
    value: float
    default: bool
    deployments: tuple[str, ...]
    result: PolicyResult
    timeline: tuple[TimelinePoint, ...]
    ttft_fine: tuple[tuple[float, float], ...]  # p90 TTFT per FINE_BIN of arrivals
    ttft_minutes: tuple[tuple[float, float], ...]  # p90 TTFT per PLOT_BIN of arrivals


def digest(
    record: ReplayRecord, knob: str, value: float, default: bool, end: float, ttft_slo: float, itl_slo: float
) -> Digest:
    return Digest(
        record.contender,
        knob,
        value,
        default,
        record.deployments,
        score(record, ttft_slo, itl_slo),
        record.timeline,
        ttft_p90_bins(record.outcomes, FINE_BIN, end),
        ttft_p90_bins(record.outcomes, PLOT_BIN, end),
    )


def point_fields(d: Digest) -> dict[str, Any]:
    """One point of a sweep as results.json keeps it: the knob's value, then the same fields as a policy."""
    return {"value": d.value, **result_fields(d.result)}


def document_json(document: Any) -> str:
    """results.json's text: same inputs, same bytes."""
    return json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def markdown_table(results: Sequence[PolicyResult], ttft_slo: float, itl_slo: float) -> str:
    header = (
        f"| policy | TTFT ≤ {ttft_slo:g}s | ITL ≤ {itl_slo:g}s | GPU-seconds | scale events "
        "| p95 TTFT (s) | p95 ITL (s) | failed |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r.name} | {r.ttft_slo_attainment:.2%} | {r.itl_slo_attainment:.2%} | {r.gpu_seconds:.0f} "
            f"| {r.scale_events} | {_seconds(r.p95_ttft_s)} | {_seconds(r.p95_itl_s)} | {r.failed} |"
        )
    return "\n".join(lines) + "\n"


def sweep_table(digests: Sequence[Digest], on_frontier: set[tuple[str, float]]) -> str:
    """Every point of a sweep by family and knob value; `*` marks the points on their family's frontier."""
    lines = [
        "| contender | knob | TTFT attained | ITL attained | GPU-seconds | scale events | p95 TTFT (s) | failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for d in sorted(digests, key=lambda d: (d.contender, d.value)):
        r = d.result
        mark = " *" if (d.contender, d.value) in on_frontier else ""
        default = " (default)" if d.default else ""
        lines.append(
            f"| {d.contender}{mark} | {d.knob}={d.value:g}{default} | {r.ttft_slo_attainment:.2%} "
            f"| {r.itl_slo_attainment:.2%} | {r.gpu_seconds:.0f} | {r.scale_events} | {_seconds(r.p95_ttft_s)} "
            f"| {r.failed} |"
        )
    return "\n".join(lines) + "\n"
