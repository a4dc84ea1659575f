"""Stress traces: seeded episodes on a base trace, the shipped files, and load/tracegen.py."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from scaler.sim.evaluation_contenders import pod_targets, static_replicas
from scaler.sim.profiles import A100_LLAMA3_8B
from scaler.sim.scenarios import FLASH_CROWD, SCENARIOS, Episode, Lengths, Scenario, scenario_for, scenario_rows
from scaler.sim.trace import TraceShape, read_csv

ROOT = Path(__file__).resolve().parents[3]
TRACES = ROOT / "load" / "traces"
CALM = TraceShape(hours=0.25, base_rps=4.0, amplitude=0.0, bursts_per_hour=0.0)


def tracegen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tracegen", ROOT / "load" / "tracegen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rate(rows: list[float], start: float, end: float) -> float:
    return sum(1 for t in rows if start <= t < end) / (end - start)


def test_a_scenario_and_its_seed_give_the_same_rows_and_another_seed_others() -> None:
    scenario = Scenario("x", "", CALM, (Episode(FLASH_CROWD, 300.0, 120.0, multiplier=5.0, ramp=10.0),))
    assert scenario_rows(scenario) == scenario_rows(scenario)
    assert scenario_rows(scenario) != scenario_rows(replace(scenario, seed=2))
    times = [r.t_seconds for r in scenario_rows(scenario)]
    assert times == sorted(times)


def test_a_flash_crowd_multiplies_the_rate_within_its_ramp_and_ends() -> None:
    crowd = Episode(FLASH_CROWD, 300.0, 300.0, multiplier=5.0, ramp=10.0)
    times = [r.t_seconds for r in scenario_rows(Scenario("x", "", replace(CALM, hours=0.5), (crowd,)))]
    before, during, after = rate(times, 0, 300), rate(times, 310, 590), rate(times, 600, 1800)
    assert 3.5 < before < 4.5 and 3.5 < after < 4.5
    assert 4.5 * before < during < 5.5 * before
    assert [crowd.envelope(t) for t in (299.0, 300.0, 305.0, 310.0, 595.0, 600.0)] == [0, 0, 0.5, 1, 0.5, 0]


def test_an_episode_draws_its_own_lengths() -> None:
    long = Lengths(prompt_median=3000.0, prompt_sigma=0.1, output_median=50.0, output_sigma=0.1)
    burst = Episode("long-prompts", 0.0, 900.0, extra_rps=4.0, lengths=long)
    rows = scenario_rows(Scenario("x", "", CALM, (burst,)))
    assert sum(1 for r in rows if r.prompt_tokens > 2500) > 0.4 * len(rows)
    assert all(r.prompt_tokens + r.output_tokens <= 4096 for r in rows)


def test_the_shipped_traces_are_their_scenarios_small_and_saturating() -> None:
    total = sum(p.stat().st_size for p in TRACES.glob("*.csv"))
    assert total < 4 * 1024 * 1024  # a few MB in git
    targets = pod_targets(A100_LLAMA3_8B)
    for name, scenario in SCENARIOS.items():
        path = TRACES / f"{name}.csv"
        assert scenario_for(path) is scenario
        rows = read_csv(path)
        assert rows == scenario_rows(scenario), f"regenerate with: python load/tracegen.py --all {TRACES}"
        assert static_replicas(rows, A100_LLAMA3_8B, targets) >= 3  # one A100 does not carry the peak


def test_tracegen_writes_every_scenario_and_one_by_name(tmp_path: Path) -> None:
    module = tracegen()
    assert module.main(["--all", str(tmp_path / "all")]) == 0
    assert sorted(p.stem for p in (tmp_path / "all").glob("*.csv")) == sorted(SCENARIOS)
    assert module.main(["--scenario", "flash-crowd", "--seed", "3", "--out", str(tmp_path / "f.csv")]) == 0
    assert read_csv(tmp_path / "f.csv") == scenario_rows(replace(SCENARIOS["flash-crowd"], seed=3))
    assert read_csv(tmp_path / "f.csv") != read_csv(tmp_path / "all" / "flash-crowd.csv")
