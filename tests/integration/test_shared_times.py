"""A real push of many pods keeps each pod's series on one shared time column (scaler.series.Timeline).

The receiver stores a large request in runs; a run that cut a pod in two would leave half of its
series on times of their own, and the memory per sample would creep back up push by push.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from scaler.otlp_pieces import PIECE_BYTES
from tests.integration.conftest import FAST, running
from tests.integration.test_hostile_ingest import raw_export

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "load"))
from otlp_payloads import SERIES_PER_POD, Batches, fleet  # noqa: E402

PODS = 120


async def test_every_series_of_a_large_request_keeps_its_pods_shared_times() -> None:
    pods = fleet(PODS)
    async with running(replace(FAST, max_series=100_000, max_datapoints_per_request=100_000)) as harness:
        export = raw_export(harness.channel_otlp)
        for tick in (1, 2, 3):
            [body] = Batches(pods, tick).requests(PODS)
            assert len(body) > PIECE_BYTES  # stored piece by piece, in runs
            assert (await export(body)).partial_success.rejected_data_points == 0
        store = harness.scaler.store
        series = [s for name in store.names() for s in store.series_named(name)]
        assert len(series) == PODS * SERIES_PER_POD
        assert [s for s in series if s.timeline is None] == []
        by_pod: dict[str, set[int]] = {}
        for s in series:
            by_pod.setdefault(s.pod, set()).add(id(s.times))
            assert s.sample_count() == 3
        assert len(by_pod) == PODS and all(len(times) == 1 for times in by_pod.values())
