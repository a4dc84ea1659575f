"""results.json's sections and results.md, from the digests of every replay and the targets' checks.

Per trace: `policies` (each family at its default), `sweep` (every point, by family, same fields),
`frontiers` (each family's Pareto points, by knob value), `best` (each family's cheapest point with
both SLOs met for 99 % of requests) and, after a flash crowd, each default's recovery. `targets`
recomputes every verdict from those figures alone (`evaluation_targets`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from scaler.sim.evaluation_contenders import OURS, RIVALS
from scaler.sim.evaluation_results import FINE_BIN, Digest, markdown_table, point_fields, sweep_table
from scaler.sim.evaluation_targets import (
    Point,
    cheapest_meeting,
    diurnal_check,
    dominance,
    first_under_seconds,
    flash_crowd_check,
    pareto_front,
    point_of,
    recovery_seconds,
)
from scaler.sim.scenarios import FLASH_CROWD, Scenario

KEDIFY = "kedify-vllm-example"
DIURNAL = "diurnal"
RECOVERY_SLACK = 30.0  # the flash crowd's target: p90 TTFT back under the SLO within a cold start + 30 s


def points_of(digests: Sequence[Digest]) -> list[Point]:
    """Points from the rounded figures results.json keeps, so verdicts read the same from the file."""
    return [point_of(d.contender, point_fields(d), d.knob) for d in digests]


def trace_section(
    setup: Mapping[str, Any], digests: Sequence[Digest], scenario: Scenario | None, ttft_slo: float
) -> dict[str, Any]:
    families = list(dict.fromkeys(d.contender for d in digests))
    sweep: dict[str, Any] = {}
    frontiers: dict[str, list[float]] = {}
    best: dict[str, float | None] = {}
    for family in families:
        mine = sorted((d for d in digests if d.contender == family), key=lambda d: d.value)
        sweep[family] = {"knob": mine[0].knob, "points": [point_fields(d) for d in mine]}
        points = points_of(mine)
        frontiers[family] = [p.value for p in pareto_front(points)]
        cheapest = cheapest_meeting(points)
        best[family] = None if cheapest is None else cheapest.value
    section: dict[str, Any] = {
        "setup": dict(setup),
        "policies": {d.contender: point_fields(d) for d in digests if d.default},
        "sweep": sweep,
        "frontiers": frontiers,
        "best": best,
    }
    crowd = scenario.episode(FLASH_CROWD) if scenario is not None else None
    if crowd is not None:
        defaults = [d for d in digests if d.default]
        section["flash_crowd"] = {
            "arrival_s": crowd.start,
            "end_s": crowd.end,
            "bin_s": FINE_BIN,
            "recovery_s": {
                d.contender: recovery_seconds(d.ttft_fine, crowd.start, crowd.end, FINE_BIN, ttft_slo) for d in defaults
            },
            "first_under_s": {
                d.contender: first_under_seconds(d.ttft_fine, crowd.start, crowd.end, ttft_slo) for d in defaults
            },
        }
    return section


def targets_section(
    sections: Mapping[str, Mapping[str, Any]],
    scenarios: Mapping[str, Scenario | None],
    cold_start: float,
) -> dict[str, Any]:
    """Every target's verdict, from the trace sections' figures."""
    out: dict[str, dict[str, Any]] = {"frontier_dominance": {}, "flash_crowd": {}, "diurnal": {}}
    for name, section in sections.items():
        points = [point_of(f, p, s["knob"]) for f, s in section["sweep"].items() for p in s["points"]]
        ours = [p for p in points if p.family in OURS]
        rivals = [p for p in points if p.family in RIVALS]
        verdict = dominance(ours, rivals)
        verdict["by_ours"] = {f: dominance([p for p in ours if p.family == f], rivals)["dominates"] for f in OURS}
        out["frontier_dominance"][name] = verdict
        policies = section["policies"]
        if "flash_crowd" in section:
            crowd = section["flash_crowd"]
            kedify = policies.get(KEDIFY)
            kedify_ttft = None if kedify is None else float(kedify["ttft_slo_attainment"])
            out["flash_crowd"][name] = {
                f: flash_crowd_check(
                    crowd["recovery_s"][f],
                    cold_start + RECOVERY_SLACK,
                    float(policies[f]["ttft_slo_attainment"]),
                    kedify_ttft,
                )
                | {"first_under_s": crowd.get("first_under_s", {}).get(f)}
                for f in OURS
                if f in policies
            }
        scenario = scenarios.get(name)
        if scenario is not None and scenario.name == DIURNAL and "static" in policies:
            static_gpu = float(policies["static"]["gpu_seconds"])
            out["diurnal"][name] = {
                f: diurnal_check(point_of(f, policies[f]), static_gpu) for f in OURS if f in policies
            }
    return out


def _yes(flag: bool | None) -> str:
    return "n/a" if flag is None else ("MET" if flag else "NOT MET")


def _grouped(points: Sequence[Mapping[str, Any]]) -> str:
    """`static replicas=1,2,4; kserve-seed target=2`: points by family, in the order given."""
    by_family: dict[str, list[str]] = {}
    for p in points:
        by_family.setdefault(f"{p['family']} {p['knob']}", []).append(f"{p['value']:g}")
    return "; ".join(f"{family}={','.join(values)}" for family, values in by_family.items())


def verdict_lines(targets: Mapping[str, Any]) -> list[str]:
    """The targets, one line each, as printed at the end of a run."""
    lines = ["targets:"]
    for name, v in targets["frontier_dominance"].items():
        left = _grouped(v["undominated"])
        detail = f" (undominated: {left})" if left else ""
        lines.append(
            f"  {name}: ours' points dominate all {v['rival_points']} rival points: {_yes(v['dominates'])}{detail}"
        )
    for name, by_family in targets["flash_crowd"].items():
        for family, c in by_family.items():
            recovery = "never" if c["recovery_s"] is None else f"{c['recovery_s']:g} s"
            first = c.get("first_under_s")
            if first is not None and first != c["recovery_s"]:
                recovery += f" (first under after {first:g} s, then missed again)"
            kedify = c["kedify_ttft_slo_attainment"]
            versus = "n/a" if kedify is None else f"{kedify:.2%}"
            lines.append(
                f"  {name}: {family} p90 TTFT back under the SLO after {recovery} (limit {c['limit_s']:g} s): "
                f"{_yes(c['recovered_in_time'])}; TTFT attained {c['ttft_slo_attainment']:.2%} vs kedify's "
                f"{versus}: {_yes(c['beats_kedify'])}"
            )
    for name, by_family in targets["diurnal"].items():
        for family, c in by_family.items():
            lines.append(
                f"  {name}: {family} TTFT {c['ttft_slo_attainment']:.2%}, ITL {c['itl_slo_attainment']:.2%}, "
                f"GPU {c['gpu_share_of_static']:.2f}x static (goal >= 99 %, <= 0.6x): {_yes(c['met'])}"
            )
    return lines


def report_markdown(document: Mapping[str, Any], digests: Mapping[str, Sequence[Digest]]) -> str:
    setup = document["setup"]
    slo, itl = setup["ttft_slo_s"], setup["itl_slo_s"]
    lines = [
        "# Evaluation",
        "",
        f"Profile {setup['profile']}, cold start {setup['cold_start_s']:g} s, OTLP export every "
        f"{setup['export_interval_s']:g} s, Prometheus scrape every {setup['scrape_interval_s']:g} s, seed "
        f"{setup['seed']}, SLOs TTFT {slo:g} s and ITL {itl:g} s, maxReplicaCount {setup['max_replicas']}.",
        "",
    ]
    for name, section in document["traces"].items():
        s = section["setup"]
        mine = digests[name]
        lines += [f"## {name}", "", f"{s['trace']}: {s['requests']} requests over {s['duration_s']:g} s."]
        if s["scenario"]:
            lines[-1] += f" {s['scenario']}."
        lines += ["", markdown_table([d.result for d in mine if d.default], slo, itl)]
        if setup["sweep"]:
            marks = {(f, v) for f, values in section["frontiers"].items() for v in values}
            lines += ["Every point (`*`: on its family's Pareto frontier of GPU-seconds and TTFT):", ""]
            lines += [sweep_table(mine, marks)]
        best = ", ".join(f"{f} {v:g}" if v is not None else f"{f} none" for f, v in section["best"].items())
        lines += [f"Cheapest setting with both SLOs met for 99 % of requests: {best}.", ""]
    lines += ["## Targets", "", *(f"- {line.strip()}" for line in verdict_lines(document["targets"])[1:]), ""]
    return "\n".join(lines)


def sweep_lines(section: Mapping[str, Any]) -> list[str]:
    """Each family's frontier and the cheapest setting meeting both SLOs, for the console."""
    knobs = {f: s["knob"] for f, s in section["sweep"].items()}
    fronts = "; ".join(
        f"{f} {knobs[f]} {', '.join(f'{v:g}' for v in values)}" for f, values in section["frontiers"].items()
    )
    best = ", ".join(f"{f} {knobs[f]}={v:g}" for f, v in section["best"].items() if v is not None) or "none"
    return [f"frontiers: {fronts}", f"cheapest with both SLOs met for 99 %: {best}"]
