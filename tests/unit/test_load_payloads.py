"""load/otlp_payloads.py: the benchmarks' pods, trimmed to a filtered scrape by --series-per-pod."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "load"))
from otlp_payloads import CATALOGUE, SERIES_PER_POD, leading_specs  # noqa: E402


def test_one_series_is_kserves_filtered_scrape_of_one_gauge() -> None:
    (spec,) = leading_specs(1)
    assert (spec.name, spec.kind, len(spec.points)) == (CATALOGUE[0].name, "gauge", 1)
    assert spec.name == "vllm:num_requests_running"


def test_the_whole_catalogue_is_every_series_of_a_pod() -> None:
    assert leading_specs(SERIES_PER_POD) == list(CATALOGUE)
    assert SERIES_PER_POD == 40


@pytest.mark.parametrize("series", [0, -1, SERIES_PER_POD + 1])
def test_a_count_that_is_not_a_whole_prefix_is_refused_with_the_allowed_values(series: int) -> None:
    with pytest.raises(ValueError, match=r"one of \[1, .*, 40\]; got " + str(series)):
        leading_specs(series)


def test_a_count_inside_a_metric_is_refused() -> None:
    boundaries = {sum(len(s.points) for s in CATALOGUE[: k + 1]) for k in range(len(CATALOGUE))}
    inside = next(n for n in range(1, SERIES_PER_POD) if n not in boundaries)
    with pytest.raises(ValueError, match=f"got {inside}"):
        leading_specs(inside)
    for n in sorted(boundaries):
        assert sum(len(s.points) for s in leading_specs(n)) == n
