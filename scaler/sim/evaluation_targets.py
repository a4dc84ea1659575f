"""The evaluation's verdicts, as pure functions of scored points: frontiers, dominance, recovery, targets.

A point is one contender at one knob value, read back from the rounded figures results.json holds,
so anyone can recompute a verdict from the file. Dominance is the issue's: ours dominates a rival
point when some point of ours has TTFT and ITL attainment at least as high and GPU-seconds at most
as high. Recovery after a flash crowd is when the p90 TTFT of each 10 s of arrivals is back under
the SLO for good (until the crowd ends).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ATTAINMENT_GOAL = 0.99  # "meets its SLOs": the share of requests within both


@dataclass(frozen=True, slots=True)
class Point:
    family: str
    value: float
    gpu_seconds: float
    ttft: float  # attainment, 0..1
    itl: float
    knob: str = ""

    @property
    def label(self) -> str:
        return f"{self.family} {self.knob}={self.value:g}"


def point_of(family: str, fields: Mapping[str, Any], knob: str = "") -> Point:
    """A point from one entry of results.json's `sweep` (value, gpu_seconds, *_slo_attainment)."""
    return Point(
        family,
        float(fields["value"]),
        float(fields["gpu_seconds"]),
        float(fields["ttft_slo_attainment"]),
        float(fields["itl_slo_attainment"]),
        knob,
    )


def pareto_front(points: Iterable[Point]) -> list[Point]:
    """The points no other beats on GPU-seconds (fewer) and TTFT attainment (more) at once, cheapest first."""
    out: list[Point] = []
    best = -math.inf
    for p in sorted(points, key=lambda p: (p.gpu_seconds, -p.ttft, -p.itl, p.value)):
        if p.ttft > best:
            out.append(p)
            best = p.ttft
    return out


def covers(ours: Point, rival: Point) -> bool:
    """At least as good on both attainments, and no more GPU time."""
    return ours.ttft >= rival.ttft and ours.itl >= rival.itl and ours.gpu_seconds <= rival.gpu_seconds


def undominated(ours: Sequence[Point], rivals: Iterable[Point]) -> list[Point]:
    """The rival points that no point of ours covers."""
    return [r for r in rivals if not any(covers(o, r) for o in ours)]


def cheapest_meeting(points: Iterable[Point], goal: float = ATTAINMENT_GOAL) -> Point | None:
    """The point with the fewest GPU-seconds among those with both attainments at `goal` or more."""
    meeting = [p for p in points if p.ttft >= goal and p.itl >= goal]
    return min(meeting, key=lambda p: (p.gpu_seconds, p.value), default=None)


def recovery_seconds(
    p90_by_bin: Sequence[tuple[float, float]], start: float, end: float, width: float, slo: float
) -> float | None:
    """Seconds from `start` until every bin of arrivals in [start, end) has its p90 TTFT within `slo`.

    `p90_by_bin` holds (bin start, p90 TTFT) for bins with arrivals, failures counted as infinite.
    0 when no bin misses; None when the last bin before `end` still misses (no recovery in time).
    """
    inside = [(t, v) for t, v in p90_by_bin if start <= t < end]
    missed = [t for t, v in inside if not v <= slo]
    if not missed:
        return 0.0
    last = max(missed)
    if last == max(t for t, _ in inside):
        return None
    return last + width - start


def first_under_seconds(
    p90_by_bin: Sequence[tuple[float, float]], start: float, end: float, slo: float, run: int = 3
) -> float | None:
    """Seconds from `start` to the first `run` bins in a row within `slo` (a relapse later is not counted)."""
    inside = [(t, v) for t, v in p90_by_bin if start <= t < end]
    for i in range(len(inside)):
        window = inside[i : i + run]
        if len(window) == min(run, len(inside) - i) and all(v <= slo for _, v in window):
            return window[0][0] - start
    return None


def dominance(ours: Sequence[Point], rivals: Sequence[Point]) -> dict[str, Any]:
    left = undominated(ours, rivals)
    return {
        "dominates": not left,
        "ours_points": len(ours),
        "rival_points": len(rivals),
        "undominated": [{"family": p.family, "knob": p.knob, "value": p.value} for p in left],
    }


def flash_crowd_check(recovery: float | None, limit: float, ttft: float, kedify_ttft: float | None) -> dict[str, Any]:
    beats = None if kedify_ttft is None else ttft > kedify_ttft
    return {
        "recovery_s": recovery,
        "limit_s": limit,
        "recovered_in_time": recovery is not None and recovery <= limit,
        "ttft_slo_attainment": ttft,
        "kedify_ttft_slo_attainment": kedify_ttft,
        "beats_kedify": beats,
    }


def diurnal_check(point: Point, static_gpu: float, ratio: float = 0.6, goal: float = ATTAINMENT_GOAL) -> dict[str, Any]:
    share = point.gpu_seconds / static_gpu if static_gpu > 0 else math.inf
    return {
        "ttft_slo_attainment": point.ttft,
        "itl_slo_attainment": point.itl,
        "gpu_share_of_static": round(share, 4),
        "goal": {"attainment": goal, "gpu_share_of_static": ratio},
        "met": point.ttft >= goal and point.itl >= goal and share <= ratio,
    }
