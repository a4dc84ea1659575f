"""The benchmarks in load/ still run: each one's --smoke version ends with its SUMMARY line, judged right.

They report, they do not judge: a target not met is a finding for docs/performance.md, not a failure.
So the test reads the SUMMARY line as the benchmark prints it (figures, target, MET or NOT MET) and
checks that the verdict follows from the figures, whichever it is.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.verdicts import NUMBER, VERDICT, Figure, assert_verdict_follows, number, parse

LOAD = Path(__file__).resolve().parents[2] / "load"


def judge_ingest(summary: str, output: str) -> None:
    line = parse(
        rf"SUMMARY ingest: (?P<paths>.+) \(ceiling {NUMBER} dp/s\); target grpc >= (?P<rate>{NUMBER}) dp/s per core "
        rf"and >= (?P<ratio>{NUMBER})x: {VERDICT}",
        summary,
    )
    paths = {}
    for part in line["paths"].split("; "):
        path = parse(rf"(\w+) ({NUMBER}) dp/s per core = ({NUMBER})x parse ceiling", part)
        paths[path[1]] = (number(path[2]), number(path[3]))
    assert "grpc" in paths, summary
    rate, ratio = paths["grpc"]
    figures = [
        Figure("grpc dp/s per core", rate, ">=", number(line["rate"])),
        Figure("grpc x parse ceiling", ratio, ">=", number(line["ratio"])),
    ]
    assert_verdict_follows(line["verdict"], figures)
    assert "client saw" not in output, "every point pushed was accepted"


def judge_query(summary: str, output: str) -> None:
    line = parse(
        rf"SUMMARY query: p99 at {NUMBER} pods: (?P<calls>.+) the empty call \({NUMBER} ms; {NUMBER} ms among the "
        rf"others\); target <= (?P<target>{NUMBER})x: {VERDICT}",
        summary,
    )
    target = number(line["target"])
    figures = []
    for part in line["calls"].split(", "):
        call = parse(rf"(.+) {NUMBER} ms = ({NUMBER})x", part)
        figures.append(Figure(f"{call[1]} p99 x the empty call", number(call[2]), "<=", target))
    # the benchmark also calls it NOT MET when a call failed, and prints the first error in its table
    assert_verdict_follows(line["verdict"], figures, excuse="first error:" if "first error:" in output else None)


def judge_memory(summary: str, output: str) -> None:
    line = parse(rf"SUMMARY memory: (?P<sizes>.+); target <= (?P<target>{NUMBER}) B/sample: {VERDICT}", summary)
    target = number(line["target"])
    figures = []
    for part in line["sizes"].split("; "):
        size = parse(
            rf"({NUMBER}) pods ({NUMBER}) B/sample = {NUMBER}x floor \({NUMBER}x target\), (?:{NUMBER}|-) B/series",
            part,
        )
        figures.append(Figure(f"B/sample at {size[1]} pods", number(size[2]), "<=", target))
    assert_verdict_follows(line["verdict"], figures)


JUDGES: dict[str, Callable[[str, str], None]] = {"ingest": judge_ingest, "query": judge_query, "memory": judge_memory}


@pytest.mark.parametrize("name", sorted(JUDGES))
def test_benchmark_smoke_prints_its_summary(name: str) -> None:
    script = LOAD / f"bench_{name}.py"
    done = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=LOAD.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"SUMMARY {name}:"), done.stdout[-3000:]
    JUDGES[name](last, done.stdout)


def test_a_verdict_that_contradicts_its_figures_is_caught() -> None:
    printed = (
        "SUMMARY memory: 20 pods 167 B/sample = 4.89x floor (2.62x target), 1,371 B/series; target <= 64 B/sample: "
    )
    judge_memory(printed + "NOT MET", "")
    with pytest.raises(AssertionError, match="misses its target"):
        judge_memory(printed + "MET", "")
    with pytest.raises(AssertionError, match="not in the form"):
        judge_memory(printed + "MOSTLY MET", "")
    assert re.fullmatch(NUMBER, "nan") is None
