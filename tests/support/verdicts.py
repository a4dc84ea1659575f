"""Reading a benchmark's SUMMARY line: its figures, its targets, and whether its MET or NOT MET follows from them.

The benchmarks report rather than judge (a target not met is a finding), so their smoke tests check that
the verdict is there and is the right one for the figures printed beside it, not that it is MET.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NUMBER = r"[\d,]+(?:\.\d+)?"  # as the benchmarks print figures; nan or inf do not match
VERDICT = r"(?P<verdict>MET|NOT MET)"


def number(text: str) -> float:
    return float(text.replace(",", ""))


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    bound: str  # ">=" or "<="
    target: float

    def within(self, strictly: bool = False) -> bool:
        if self.bound == ">=":
            return self.value > self.target if strictly else self.value >= self.target
        return self.value < self.target if strictly else self.value <= self.target


def parse(pattern: str, line: str) -> re.Match[str]:
    match = re.fullmatch(pattern, line)
    assert match, f"the SUMMARY line is not in the form the benchmark prints:\n{line}\nexpected: {pattern}"
    return match


def assert_verdict_follows(verdict: str, figures: list[Figure], excuse: str | None = None) -> None:
    """MET only with every figure within its target; NOT MET only with one outside it, or for a printed `excuse`.

    Figures are compared as printed, so a value rounded onto its target counts either way.
    """
    assert figures, "no figures to judge"
    shown = "; ".join(f"{f.name} {f.value:g} (target {f.bound} {f.target:g})" for f in figures)
    if verdict == "MET":
        assert all(f.within() for f in figures), f"MET, yet a figure misses its target: {shown}"
    else:
        assert verdict == "NOT MET", verdict
        missed = not all(f.within(strictly=True) for f in figures)
        assert missed or excuse, f"NOT MET, yet every figure meets its target and nothing else is reported: {shown}"
