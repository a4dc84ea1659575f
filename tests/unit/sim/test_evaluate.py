"""`keda-llm-scaler evaluate`: targets from the profile, scoring, and short replays end to end."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from scaler.errors import InvalidTrigger
from scaler.sim.evaluate import evaluate_main
from scaler.sim.evaluation_contenders import Envelope, check, contenders, pod_targets, static_replicas
from scaler.sim.evaluation_replay import ReplayConfig, ReplayRecord, replay
from scaler.sim.evaluation_results import nearest_rank, score
from scaler.sim.keda import Trigger
from scaler.sim.ours import default_headroom
from scaler.sim.profiles import A100_LLAMA3_8B
from scaler.sim.trace import TraceRow, write_csv
from scaler.sim.virtual_fleet import Outcome

POLICIES = ("ours-pd", "ours-unified", "ours-prometheus", "kserve-seed", "kedify-vllm-example", "static")
FIELDS = ("ttft_slo_attainment", "itl_slo_attainment", "gpu_seconds", "scale_events", "p95_ttft_s", "p95_itl_s")
BURST = 123.0


def steady(start: float, end: float, rps: float, prompt: int = 1000, output: int = 200) -> list[TraceRow]:
    count = round((end - start) * rps)
    return [TraceRow(round(start + i / rps, 3), prompt, output) for i in range(count)]


def burst_trace() -> list[TraceRow]:
    """Two minutes at 2 requests/s, then a 20 requests/s burst of two minutes, then calm."""
    return steady(0.0, BURST, 2.0) + steady(BURST, BURST + 120.0, 20.0) + steady(BURST + 120.0, 300.0, 2.0)


def test_pod_targets_are_read_off_the_profile() -> None:
    targets = pod_targets(A100_LLAMA3_8B)
    assert targets.prefill_tokens_per_s == round(0.75 / 93e-6)  # 3/4 of pure prefill compute
    assert targets.running == 192  # 3/4 of max_num_seqs
    assert targets.decode_tokens_per_s == round(192 / (0.0095 + 80e-6 * 192))


def test_static_replicas_cover_the_busiest_minute_at_the_headroom() -> None:
    targets = pod_targets(A100_LLAMA3_8B)
    per_request = 1000 * 93e-6 + 200 * (0.0095 + 80e-6 * 192) / 192
    assert static_replicas(burst_trace(), A100_LLAMA3_8B, targets) == math.ceil(20 * per_request / 0.75)
    assert static_replicas(steady(0.0, 600.0, 0.1), A100_LLAMA3_8B, targets) == 1


def outcome(arrival: float, ttft: float | None, reason: str = "stop", tokens: int = 11, itl: float = 0.01) -> Outcome:
    first = None if ttft is None else arrival + ttft
    finish = arrival + (ttft or 0.0) + itl * (tokens - 1)
    return Outcome(f"r{arrival}", arrival, first, finish, 100, tokens, reason, ("p",))


def test_failed_and_unfinished_requests_miss_both_slos() -> None:
    outcomes = (
        outcome(0.0, 0.5),
        outcome(1.0, 3.0),  # misses the TTFT SLO only
        outcome(2.0, 0.5, itl=0.2),  # misses the ITL SLO only
        outcome(3.0, None, "unrouted", tokens=0),
    )
    record = ReplayRecord("x", ("d",), 5, outcomes, (), (), 100.0)  # and one still running at the cut-off
    result = score(record, ttft_slo=2.0, itl_slo=0.1)
    assert (result.ttft_slo_attainment, result.itl_slo_attainment) == (2 / 5, 2 / 5)
    assert result.failed == 2 and result.p95_ttft_s is None and result.p95_itl_s is None
    assert nearest_rank([3.0, 1.0, 2.0], 0.5) == 2.0 and nearest_rank([], 0.9) is None


def test_ours_sees_a_burst_before_the_prometheus_path_does() -> None:
    """HPA syncs at 121, 136, 151 s; pushes every 5 s; scrapes at 122, 137, 152 s. The burst starts at
    123 s: pushes carry it to the sync at 136 s, while Prometheus first holds it at 137 s, too late for
    that sync, so kserve-seed cannot react before 151 s."""
    rows = burst_trace()
    env = Envelope(A100_LLAMA3_8B, ttft_slo=2.0, itl_slo=0.1)
    config = ReplayConfig(end=300.0, export_phase=0.0, scrape_phase=2.0, hpa_phase=1.0)
    by_name = {c.name: c for c in contenders(env, rows)}

    def first_scale_up(name: str) -> float:
        record = replay(by_name[name], rows, config)
        return min(e.t for e in record.scale_events if e.t >= BURST and e.new > e.old)

    assert first_scale_up("ours-unified") <= 136.0 < 151.0 <= first_scale_up("kserve-seed")


def run(traces: list[Path], out: Path, *extra: str, jobs: int = 1) -> int:
    return evaluate_main(["--trace", *map(str, traces), "--out", str(out), "--jobs", str(jobs), *extra])


FEW = ("--sweep", "ours-unified=0.6,1", "kserve-seed=8", "static=1,3")  # a few points beside the defaults


def test_a_short_sweep_end_to_end_is_complete_deterministic_and_sane(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    burst, calm = tmp_path / "burst.csv", tmp_path / "calm.csv"
    write_csv(burst_trace(), burst)
    write_csv(steady(0.0, 120.0, 1.0), calm)
    assert run([burst, calm], tmp_path / "a", "--duration", "3m", *FEW) == 0
    printed = capsys.readouterr().out
    assert "| ours-pd |" in printed and "targets:" in printed and "ours' points dominate" in printed
    assert run([burst, calm], tmp_path / "b", "--duration", "3m", *FEW, jobs=2) == 0  # other processes
    first, second = ((tmp_path / d / "results.json").read_bytes() for d in "ab")
    assert first == second

    results = json.loads(first)
    assert sorted(results["traces"]) == ["burst", "calm"] and results["setup"]["sweep"]
    section = results["traces"]["burst"]
    policies = section["policies"]
    assert tuple(policies) == tuple(sorted(POLICIES))
    assert all(set(FIELDS) <= set(policies[p]) for p in POLICIES)
    assert section["setup"]["requests"] == len([r for r in burst_trace() if r.t_seconds < 180.0])
    values = {family: [p["value"] for p in s["points"]] for family, s in section["sweep"].items()}
    headroom = default_headroom()
    assert values["ours-unified"] == sorted({0.6, headroom, 1.0}) and values["kserve-seed"] == [2.0, 8.0]
    assert values["static"] == sorted({1.0, 3.0, policies["static"]["value"]})
    assert values["ours-pd"] == [headroom] and values["kedify-vllm-example"] == [1.0]
    for family, s in section["sweep"].items():
        assert all(set(FIELDS) <= set(p) for p in s["points"])
        assert set(section["frontiers"][family]) <= set(values[family])
    assert policies["static"]["scale_events"] == 0 and policies["ours-unified"]["scale_events"] > 0
    assert set(results["targets"]["frontier_dominance"]) == {"burst", "calm"}
    assert results["targets"]["flash_crowd"] == {} and results["targets"]["diurnal"] == {}  # no scenario

    pictures = sorted(p.name for p in (tmp_path / "a" / "burst").glob("*.png"))
    assert pictures == sorted([f"{p}.png" for p in POLICIES] + ["comparison.png", "pareto.png"])
    report = (tmp_path / "a" / "results.md").read_text()
    assert "## burst" in report and "## calm" in report and "## Targets" in report
    assert "| ours-unified * | headroom=0.6 |" in report or "| ours-unified | headroom=0.6 |" in report


def test_without_a_sweep_each_family_runs_once(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    write_csv(steady(0.0, 60.0, 1.0), trace)
    assert run([trace], tmp_path / "o") == 0
    section = json.loads((tmp_path / "o" / "results.json").read_text())["traces"]["t"]
    assert all(len(s["points"]) == 1 for s in section["sweep"].values())
    assert not json.loads((tmp_path / "o" / "results.json").read_text())["setup"]["sweep"]


def test_a_trigger_the_scaler_refuses_is_an_error_not_a_replay() -> None:
    env = Envelope(A100_LLAMA3_8B, ttft_slo=2.0, itl_slo=0.1)
    good = next(c for c in contenders(env, burst_trace()) if c.name == "ours-unified")
    plan = good.pools[0]
    assert plan.scaled_object is not None
    bad_trigger = Trigger.of({**dict(plan.scaled_object.triggers[0].metadata), "noSuchKey": "1"})
    bad = replace(good, pools=(replace(plan, scaled_object=replace(plan.scaled_object, triggers=(bad_trigger,))),))
    with pytest.raises(InvalidTrigger, match="noSuchKey"):
        check(bad)


def test_another_seed_moves_the_phases_and_bad_input_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.csv"
    write_csv(steady(0.0, 60.0, 1.0), trace)
    assert run([trace], tmp_path / "s2", "--seed", "2") == 0
    phases = json.loads((tmp_path / "s2" / "results.json").read_text())["traces"]["t"]["setup"]["phases_s"]
    assert phases != {"export": 0.672, "scrape": 12.712, "hpa": 11.457}  # seed 1's
    assert run([tmp_path / "missing.csv"], tmp_path / "x") == 1
    assert run([trace], tmp_path / "x", "--ttft-slo", "2") == 2  # durations need a unit
    assert run([trace], tmp_path / "x", "--sweep", "nobody=1") == 2
    assert run([trace, trace], tmp_path / "x") == 1  # two sections of one name
    assert "error" in capsys.readouterr().err
