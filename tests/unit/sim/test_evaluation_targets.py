"""The evaluation's verdicts: Pareto frontiers, dominance, recovery after a crowd, and the targets section."""

from __future__ import annotations

import math
from typing import Any

from scaler.sim.evaluation_report import targets_section
from scaler.sim.evaluation_targets import (
    Point,
    cheapest_meeting,
    covers,
    diurnal_check,
    first_under_seconds,
    flash_crowd_check,
    pareto_front,
    recovery_seconds,
    undominated,
)
from scaler.sim.scenarios import SCENARIOS


def p(family: str, value: float, gpu: float, ttft: float, itl: float = 1.0) -> Point:
    return Point(family, value, gpu, ttft, itl, "k")


def test_the_frontier_keeps_what_nothing_cheaper_beats_cheapest_first() -> None:
    points = [p("a", 1, 100, 0.5), p("a", 2, 200, 0.9), p("a", 3, 150, 0.95), p("a", 4, 300, 0.95), p("a", 5, 400, 1)]
    assert [x.value for x in pareto_front(points)] == [1, 3, 5]  # 2 costs more than 3 for less; 4 ties 3 dearer
    assert pareto_front([]) == []
    same_cost = [p("a", 1, 100, 0.8), p("a", 2, 100, 0.9)]
    assert [x.value for x in pareto_front(same_cost)] == [2]


def test_dominance_wants_both_attainments_and_no_more_gpu() -> None:
    ours = [p("o", 1, 100, 0.95, 0.99), p("o", 2, 300, 1.0, 1.0)]
    rivals = [
        p("r", 1, 100, 0.95, 0.99),  # equal: covered
        p("r", 2, 150, 0.90, 0.999),  # better ITL than ours at 100, cheaper than ours at 300
        p("r", 3, 400, 1.0, 1.0),  # covered by ours at 300
        p("r", 4, 50, 0.2, 0.2),  # cheaper than anything of ours
    ]
    assert covers(ours[0], rivals[0]) and not covers(ours[0], rivals[1])
    assert [x.value for x in undominated(ours, rivals)] == [2, 4]


def test_recovery_is_when_every_later_bin_of_the_crowd_meets_the_slo() -> None:
    bins = [(590.0, 0.3), (600.0, 5.0), (610.0, math.inf), (620.0, 1.0), (630.0, 3.0), (640.0, 0.5), (650.0, 0.4)]
    assert recovery_seconds(bins, 600, 660, 10, 2.0) == 40.0  # the last miss is the bin at 630 s
    assert recovery_seconds(bins, 640, 660, 10, 2.0) == 0.0
    assert recovery_seconds(bins, 600, 640, 10, 2.0) is None  # still missing in its last bin
    assert recovery_seconds([], 600, 640, 10, 2.0) == 0.0
    relapse = [(600.0, 9.0), (610.0, 1.0), (620.0, 1.0), (630.0, 1.0), (640.0, 4.0), (650.0, 1.0)]
    assert first_under_seconds(relapse, 600, 660, 2.0) == 10.0  # three bins in a row from 610 s
    assert recovery_seconds(relapse, 600, 660, 10, 2.0) == 50.0  # for good only after the miss at 640 s
    assert first_under_seconds([(600.0, 9.0), (610.0, 1.0)], 600, 620, 2.0) == 10.0  # the crowd ended


def test_the_cheapest_point_meeting_both_slos_and_the_two_checks() -> None:
    points = [p("a", 0.5, 100, 0.98), p("a", 0.7, 150, 0.995, 0.99), p("a", 0.9, 120, 0.99, 0.995)]
    best = cheapest_meeting(points)
    assert best is not None and best.value == 0.9
    assert cheapest_meeting([p("a", 1, 1, 0.5)]) is None
    assert diurnal_check(p("o", 1, 59, 0.995, 0.999), static_gpu=100)["met"]
    assert not diurnal_check(p("o", 1, 61, 0.995, 0.999), static_gpu=100)["met"]
    assert not diurnal_check(p("o", 1, 50, 0.985, 1.0), static_gpu=100)["met"]
    check = flash_crowd_check(75.0, 90.0, 0.9, 0.8)
    assert check["recovered_in_time"] and check["beats_kedify"]
    assert not flash_crowd_check(None, 90.0, 0.7, 0.8)["recovered_in_time"]


def fields(value: float, gpu: float, ttft: float, itl: float = 1.0) -> dict[str, Any]:
    return {"value": value, "gpu_seconds": gpu, "ttft_slo_attainment": ttft, "itl_slo_attainment": itl}


def test_the_targets_section_reads_only_the_trace_sections() -> None:
    sweep = {
        "ours-unified": {"knob": "headroom", "points": [fields(0.6, 900, 0.995), fields(0.8, 500, 0.99)]},
        "ours-pd": {"knob": "headroom", "points": [fields(0.8, 700, 0.999)]},
        "kedify-vllm-example": {"knob": "scale", "points": [fields(1, 600, 0.95)]},
        "static": {"knob": "replicas", "points": [fields(1, 300, 0.4), fields(4, 1000, 1.0)]},
    }
    policies = {
        "ours-unified": fields(0.8, 500, 0.99, 0.995),
        "ours-pd": fields(0.8, 700, 0.999),
        "kedify-vllm-example": fields(1, 600, 0.95),
        "static": fields(4, 1000, 1.0),
    }
    crowd = {"arrival_s": 600.0, "end_s": 900.0, "bin_s": 10.0, "recovery_s": {"ours-unified": 80.0, "ours-pd": None}}
    sections = {
        "diurnal": {"sweep": sweep, "policies": policies},
        "flash-crowd": {"sweep": sweep, "policies": policies, "flash_crowd": crowd},
    }
    scenarios = {"diurnal": SCENARIOS["diurnal"], "flash-crowd": SCENARIOS["flash-crowd"]}
    targets = targets_section(sections, scenarios, cold_start=60.0)
    dominance = targets["frontier_dominance"]["diurnal"]
    assert not dominance["dominates"]
    assert dominance["undominated"] == [
        {"family": "static", "knob": "replicas", "value": 1.0},
        {"family": "static", "knob": "replicas", "value": 4.0},
    ]
    assert dominance["by_ours"] == {"ours-pd": False, "ours-unified": False}
    flash = targets["flash_crowd"]["flash-crowd"]
    assert flash["ours-unified"]["recovered_in_time"] and flash["ours-unified"]["beats_kedify"]
    assert not flash["ours-pd"]["recovered_in_time"] and flash["ours-pd"]["limit_s"] == 90.0
    diurnal = targets["diurnal"]["diurnal"]
    assert diurnal["ours-unified"]["met"] and diurnal["ours-unified"]["gpu_share_of_static"] == 0.5
    assert not diurnal["ours-pd"]["met"]  # 0.7x static
    assert "diurnal" not in targets["flash_crowd"] and "flash-crowd" not in targets["diurnal"]
