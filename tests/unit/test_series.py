"""One series' ring buffer: retention, compaction, counter resets, deltas and histogram layouts."""

from __future__ import annotations

import math
import sys
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.otlp import Histogram, Kind, Sample
from scaler.series import _DEAD_SHARE, _MOVE_FREELY, Series

PROPS = settings(max_examples=150, deadline=None, database=None)


def gauge(value: float) -> Sample:
    return Sample("g", (("pod", "p"),), Kind.GAUGE, value)


def counter(value: float, start: float = 0.0, delta: bool = False) -> Sample:
    return Sample("c", (("pod", "p"),), Kind.COUNTER, value, start, delta)


def histogram(
    count: float, total: float, buckets: tuple[float, ...], bounds: tuple[float, ...] = (1.0, 2.0), delta: bool = False
) -> Sample:
    return Sample("h", (), Kind.HISTOGRAM, count, 0.0, delta, Histogram(count, total, bounds, buckets))


def series_for(sample: Sample) -> Series:
    return Series.for_sample(sample, "ns/p")


def feed(series: Series, points: list[tuple[float, Sample]], retention: float = 1e9) -> None:
    for now, sample in points:
        series.append(sample, now, now - retention)


def retained_times(series: Series) -> list[float]:
    return list(series.times[series.head :])


# -- gauges and retention ----------------------------------------------------------------------------


def test_gauge_keeps_values_and_times() -> None:
    s = series_for(gauge(0))
    feed(s, [(1.0, gauge(5)), (2.0, gauge(-3)), (4.0, gauge(8))])
    assert retained_times(s) == [1.0, 2.0, 4.0]
    assert s.column(0, -math.inf) == [5.0, -3.0, 8.0]
    assert s.last() == 8.0
    assert s.sample_count() == 3
    assert s.last_time() == 4.0
    assert (s.kind, s.pod, s.width) == (Kind.GAUGE, "ns/p", 1)


def test_empty_series_reads() -> None:
    s = series_for(gauge(0))
    assert not s.has_data()
    assert s.sample_count() == 0
    assert s.last_time() == -math.inf
    assert s.is_fresh(0.0, 1e9) is False
    assert s.increase(0, -math.inf) is None
    assert s.row_at_or_before(10.0) is None


def test_ring_buffer_trims_by_retention() -> None:
    s = series_for(gauge(0))
    feed(s, [(float(t), gauge(t)) for t in range(201)], retention=60.0)
    assert retained_times(s) == [float(t) for t in range(140, 201)]
    assert s.column(0, -math.inf) == [float(v) for v in range(140, 201)]
    assert s.sample_count() == 61


def test_trim_alone_drops_old_rows() -> None:
    s = series_for(gauge(0))
    feed(s, [(float(t), gauge(t)) for t in range(10)])
    s.trim(7.0)
    assert retained_times(s) == [7.0, 8.0, 9.0]
    s.trim(100.0)
    assert not s.has_data()
    assert s.sample_count() == 0


def test_compaction_bounds_storage_and_keeps_values() -> None:
    s = series_for(histogram(0, 0, (0, 0, 0)))
    for t in range(3000):
        s.append(histogram(t, 2.0 * t, (t, 2 * t, 3 * t)), float(t), t - 10.0)
        assert len(s.rows) == len(s.times) * s.width
        assert s.head == 0  # 11 rows of 5 floats: small enough to compact on every trim
    assert retained_times(s) == [float(t) for t in range(2989, 3000)]
    assert s.column(0, -math.inf) == [float(t) for t in range(2989, 3000)]
    assert s.column(1, -math.inf) == [2.0 * t for t in range(2989, 3000)]
    assert s.column(4, 2995.0) == [3.0 * t for t in range(2995, 3000)]
    assert s.increase(0, 2990.0) == (9.0, 9.0)


def test_a_large_buffer_is_compacted_once_an_eighth_of_it_is_dead() -> None:
    s = series_for(gauge(0))
    retained = 2 * _MOVE_FREELY
    heads = []
    for t in range(3 * retained):
        s.append(gauge(t), float(t), t - (retained - 1.0))
        assert s.head * _DEAD_SHARE < len(s.times)  # never more than an eighth dead after a trim
        heads.append(s.head)
    assert max(heads) == retained // (_DEAD_SHARE - 1)  # compacted when the dead rows reach 1/8 of the buffer
    compactions = heads[retained:].count(0)  # once full: each compaction moves the whole buffer
    assert compactions == 2 * retained // (retained // (_DEAD_SHARE - 1) + 1)  # so each row is moved about 7 times
    assert retained_times(s) == [float(t) for t in range(2 * retained, 3 * retained)]
    assert s.column(0, 3 * retained - 3.0) == [3 * retained - 3.0, 3 * retained - 2.0, 3 * retained - 1.0]


def test_a_gauge_holds_no_reset_bookkeeping() -> None:
    """Offsets exist only once a counter resets, and the last raw row only for cumulative series."""
    g = series_for(gauge(0))
    feed(g, [(1.0, gauge(5)), (2.0, gauge(3))])
    assert (g.offset, g.last_raw) == (None, None)
    c = series_for(counter(0))
    feed(c, [(1.0, counter(5)), (2.0, counter(9))])
    assert c.offset is None and list(c.last_raw or ()) == [9.0]
    feed(c, [(3.0, counter(1)), (4.0, counter(2))])  # lower, then confirmed: a reset
    assert list(c.offset or ()) == [9.0]
    assert c.column(0, -math.inf) == [5.0, 9.0, 10.0, 11.0]
    assert c.last() == 2.0


def test_same_instant_append_replaces_the_row() -> None:
    s = series_for(gauge(0))
    feed(s, [(5.0, gauge(1)), (5.0, gauge(2))])
    assert retained_times(s) == [5.0]
    assert s.last() == 2.0
    # a clock step back also replaces the newest row, and time never goes backwards
    feed(s, [(4.0, gauge(3))])
    assert retained_times(s) == [5.0]
    assert s.last() == 3.0


def test_first_index_and_row_at_or_before() -> None:
    s = series_for(gauge(0))
    feed(s, [(10.0, gauge(1)), (20.0, gauge(2)), (30.0, gauge(3))])
    assert s.first_index(20.0) == 1  # inclusive
    assert s.first_index(20.5) == 2
    assert s.row_at_or_before(20.0) == 1
    assert s.row_at_or_before(25.0) == 1
    assert s.row_at_or_before(100.0) == 2
    assert s.row_at_or_before(5.0) is None
    assert s.value_at(1) == 2.0


def test_delta_since_starts_from_the_row_before_the_window() -> None:
    s = series_for(counter(0))
    feed(s, [(0.0, counter(10)), (10.0, counter(20)), (20.0, counter(40))])
    assert s.delta_since(5.0) == ([30.0], 20.0)  # from the row at 0, the newest at or before 5
    assert s.delta_since(10.0) == ([20.0], 10.0)
    assert s.delta_since(-100.0) == ([30.0], 20.0)  # nothing before: from the first row
    assert s.delta_since(20.0) is None
    assert s.delta_since(25.0) is None


def test_freshness_and_the_end_marker() -> None:
    s = series_for(gauge(0))
    feed(s, [(10.0, gauge(1))])
    assert s.is_fresh(40.0, 30.0) is True
    assert s.is_fresh(40.1, 30.0) is False
    s.append(Sample("g", (), Kind.GAUGE, math.nan, no_value=True), 12.0, -1e9)
    assert s.ended is True
    assert s.is_fresh(12.0, 30.0) is False
    assert s.sample_count() == 1  # the marker is not a sample
    feed(s, [(13.0, gauge(4))])
    assert s.ended is False
    assert s.is_fresh(13.0, 30.0) is True


# -- counters ----------------------------------------------------------------------------------------


def test_counter_reset_by_lower_value_gives_correct_increase() -> None:
    s = series_for(counter(0))
    feed(s, [(0.0, counter(10)), (1.0, counter(20)), (2.0, counter(5)), (3.0, counter(15))])
    # true increase: +10, then restart from 0 to 5 (+5), then +10
    assert s.increase(0, -math.inf) == (25.0, 3.0)
    assert s.increase(0, 1.0) == (15.0, 2.0)
    assert s.increase(0, 2.0) == (10.0, 1.0)
    assert s.last() == 15.0  # as the producer reported it
    assert s.resets == 1


def test_counter_reset_by_new_start_time() -> None:
    s = series_for(counter(0))
    feed(s, [(0.0, counter(10, start=100)), (1.0, counter(20, start=100)), (2.0, counter(30, start=200))])
    # the process restarted at 200: 20 -> 30 is not +10 but +30
    assert s.increase(0, -math.inf) == (40.0, 2.0)
    assert s.resets == 1


def test_unknown_start_time_is_no_reset() -> None:
    s = series_for(counter(0))
    feed(s, [(0.0, counter(10, start=0)), (1.0, counter(20, start=50)), (2.0, counter(30, start=0))])
    assert s.increase(0, -math.inf) == (20.0, 2.0)
    assert s.resets == 0


def test_repeated_resets_accumulate() -> None:
    s = series_for(counter(0))
    values = [5, 8, 2, 4, 1, 0, 3]
    feed(s, [(float(t), counter(v)) for t, v in enumerate(values)])
    # 5->8: 3, reset ->2: 2 (4 is below 8 too), 2->4: 2, reset ->1: 1 (0 is below 4 too),
    # then 0 is a late point (3 is above 1 again), 1->3: 2
    assert s.increase(0, -math.inf) == (10.0, 6.0)
    assert s.resets == 2
    assert s.last() == 3.0


def test_a_single_lower_point_the_next_contradicts_is_late_not_a_reset() -> None:
    s = series_for(counter(0))
    feed(s, [(float(t), counter(v, start=100)) for t, v in enumerate([1000, 1010, 1005, 1020])])
    increase, seconds = s.increase(0, -math.inf) or (math.nan, math.nan)
    assert (increase, seconds) == (20.0, 3.0)  # about 7/s, not 1015 read as a restart
    assert s.resets == 0
    assert s.last() == 1020.0


def test_a_lower_point_is_held_flat_until_the_next_one_judges_it() -> None:
    s = series_for(counter(0))
    feed(s, [(0.0, counter(1000)), (1.0, counter(1010)), (2.0, counter(4))])
    assert s.increase(0, -math.inf) == (10.0, 2.0)  # no guess yet: neither a late point nor a reset
    assert s.last() == 4.0  # as the producer reported it
    feed(s, [(3.0, counter(9))])  # still below 1010: the producer restarted at 2.0
    assert s.increase(0, -math.inf) == (19.0, 3.0)
    assert s.increase(0, 2.0) == (5.0, 1.0)
    assert s.resets == 1


def test_a_point_from_before_the_latest_restart_is_ignored() -> None:
    s = series_for(counter(0))
    feed(s, [(0.0, counter(50, start=100)), (1.0, counter(5, start=200)), (2.0, counter(60, start=100))])
    feed(s, [(3.0, counter(8, start=200))])
    assert s.increase(0, -math.inf) == (8.0, 3.0)  # 50 -> restart at 5 (+5) -> 8 (+3); the late 60 adds 0
    assert s.resets == 1


def test_delta_samples_accumulate() -> None:
    s = series_for(counter(0, delta=True))
    feed(s, [(0.0, counter(3, delta=True)), (10.0, counter(4, delta=True)), (20.0, counter(5, delta=True))])
    assert s.column(0, -math.inf) == [3.0, 7.0, 12.0]
    assert s.increase(0, -math.inf) == (9.0, 20.0)
    assert s.last() == 12.0  # the running total


def test_delta_samples_at_the_same_instant_add_up() -> None:
    s = series_for(counter(0, delta=True))
    feed(s, [(0.0, counter(3, delta=True)), (1.0, counter(4, delta=True)), (1.0, counter(6, delta=True))])
    assert retained_times(s) == [0.0, 1.0]
    assert s.column(0, -math.inf) == [3.0, 13.0]


def test_delta_gauge_accumulates_too() -> None:
    up_down = Sample("g", (), Kind.GAUGE, 2.0, delta=True)
    s = series_for(up_down)
    feed(s, [(0.0, up_down), (1.0, Sample("g", (), Kind.GAUGE, -5.0, delta=True))])
    assert s.column(0, -math.inf) == [2.0, -3.0]
    assert s.last() == -3.0


# -- histograms --------------------------------------------------------------------------------------


def test_histogram_rows_hold_count_sum_and_buckets() -> None:
    s = series_for(histogram(0, 0, (0, 0, 0)))
    feed(s, [(0.0, histogram(4, 2.0, (1, 2, 1))), (10.0, histogram(10, 7.5, (3, 5, 2)))])
    assert s.width == 5
    assert s.bounds == (1.0, 2.0)
    assert s.increase(0, -math.inf) == (6.0, 10.0)
    assert s.increase(1, -math.inf) == (5.5, 10.0)
    assert [s.increase(c, -math.inf) for c in (2, 3, 4)] == [(2.0, 10.0), (3.0, 10.0), (1.0, 10.0)]
    assert (s.last(0), s.last(1)) == (10.0, 7.5)


def test_histogram_reset_corrects_every_column() -> None:
    s = series_for(histogram(0, 0, (0, 0, 0)))
    feed(
        s,
        [
            (0.0, histogram(10, 5.0, (4, 4, 2))),
            (1.0, histogram(12, 6.0, (5, 5, 2))),
            (2.0, histogram(3, 1.0, (1, 1, 1))),
        ],
    )
    assert (s.resets, s.increase(0, -math.inf), s.last(0)) == (0, (2.0, 2.0), 3.0)  # lower: held until judged
    feed(s, [(3.0, histogram(5, 2.0, (2, 2, 1)))])  # below 12 still: it was a reset
    assert s.resets == 1
    assert s.increase(0, -math.inf) == (7.0, 3.0)
    assert s.increase(1, -math.inf) == (3.0, 3.0)
    assert s.increase(2, -math.inf) == (3.0, 3.0)
    assert s.last(0) == 5.0


def test_histogram_layout_change_restarts_the_series() -> None:
    s = series_for(histogram(0, 0, (0, 0, 0)))
    feed(s, [(0.0, histogram(4, 2.0, (1, 2, 1))), (1.0, histogram(6, 3.0, (2, 3, 1)))])
    feed(s, [(2.0, histogram(1, 0.5, (1, 0, 0, 0), bounds=(0.5, 1.0, 2.0)))])
    assert s.width == 6
    assert s.bounds == (0.5, 1.0, 2.0)
    assert retained_times(s) == [2.0]
    assert s.increase(0, -math.inf) is None
    assert s.last(0) == 1.0
    # same width, different bounds also restarts
    feed(s, [(3.0, histogram(2, 1.0, (1, 1, 0, 0), bounds=(0.1, 1.0, 2.0)))])
    assert s.bounds == (0.1, 1.0, 2.0)
    assert retained_times(s) == [3.0]


def test_delta_histogram_accumulates_every_column() -> None:
    s = series_for(histogram(0, 0, (0, 0, 0), delta=True))
    feed(s, [(0.0, histogram(2, 1.0, (1, 1, 0), delta=True)), (5.0, histogram(3, 2.0, (0, 1, 2), delta=True))])
    assert s.column(0, -math.inf) == [2.0, 5.0]
    assert s.column(1, -math.inf) == [1.0, 3.0]
    assert s.column(4, -math.inf) == [0.0, 2.0]


# -- properties --------------------------------------------------------------------------------------

_steps = st.lists(
    st.tuples(st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0, 45.0, 200.0]), st.integers(-1000, 1000)),
    min_size=1,
    max_size=400,
)


@PROPS
@given(_steps, st.sampled_from([1.0, 15.0, 60.0, 300.0]), st.booleans())
def test_times_stay_sorted_and_within_the_horizon(
    steps: list[tuple[float, int]], retention: float, as_histogram: bool
) -> None:
    s = series_for(histogram(0, 0, (0, 0, 0)) if as_histogram else gauge(0))
    now = 0.0
    for dt, value in steps:
        now += dt
        sample = histogram(abs(value), float(value), (0, 0, abs(value))) if as_histogram else gauge(value)
        s.append(sample, now, now - retention)
        times = retained_times(s)
        assert times == sorted(set(times))
        assert times[-1] == now
        assert all(t >= now - retention for t in times)
        assert len(s.rows) == len(s.times) * s.width
        assert s.head == 0 or (s.head * _DEAD_SHARE < len(s.times) and len(s.rows) > _MOVE_FREELY)
        assert s.last(1 if as_histogram else 0) == value


_counter_steps = st.lists(
    st.tuples(
        st.sampled_from([0.0, 1.0, 2.0, 7.0]),  # seconds since the previous sample (0: the same instant)
        st.integers(0, 10**6),
        st.sampled_from([0, 0, 0, 1, 2]),  # start-time epoch (0: unknown)
    ),
    min_size=1,
    max_size=200,
)


@PROPS
@given(_counter_steps, st.sampled_from([5.0, 30.0, 1e9]))
def test_counter_increase_is_never_negative(steps: list[tuple[float, int, int]], retention: float) -> None:
    s = series_for(counter(0))
    now = 0.0
    for dt, value, start in steps:
        now += dt
        s.append(counter(value, start=float(start)), now, now - retention)
        for since in [-math.inf, *retained_times(s)]:
            span = s.increase(0, since)
            if span is not None:
                assert span[0] >= 0
                assert span[1] > 0


@PROPS
@given(
    st.lists(
        st.tuples(st.integers(0, 1000), st.booleans()),  # value, and whether the producer restarted first
        min_size=2,
        max_size=100,
    )
)
def test_counter_increase_matches_a_reset_aware_sum(points: list[tuple[int, bool]]) -> None:
    s = series_for(counter(0))
    epoch = 1
    values = []
    for t, (value, restart) in enumerate(points):
        epoch += restart
        s.append(counter(value, start=float(epoch)), float(t), -1e9)
        values.append(value)
    # A restart (a new start time) counts from 0. A lower value without one is a restart only if the
    # next value is below the last one before it too; otherwise it was a late point and adds nothing.
    expected, last, held = 0, values[0], None
    for value, restart in points[1:]:
        if restart:
            expected, last, held = expected + value, value, None
            continue
        if held is not None and value < last:
            expected, last = expected + held, held
        held = None
        if value < last:
            held = value
        else:
            expected, last = expected + value - last, value
    assert s.increase(0, -math.inf) == (float(expected), float(len(points) - 1))
    assert s.last() == values[-1]


def test_pack_gives_back_the_room_an_array_grew_into_and_keeps_every_row() -> None:
    s = series_for(histogram(0, 0, (0, 0, 0)))
    feed(s, [(float(t), histogram(t, t, (t, t, t))) for t in range(40)], retention=30.0)
    before = (list(s.times), list(s.rows), s.head)
    grown = sys.getsizeof(s.times), sys.getsizeof(s.rows)
    s.pack()
    assert (list(s.times), list(s.rows), s.head) == before
    empty = sys.getsizeof(array("d"))
    assert sys.getsizeof(s.times) == empty + 8 * len(s.times) < grown[0]
    assert sys.getsizeof(s.rows) <= empty + 8 * (len(s.rows) + len(s.rows) // 16)  # CPython's own spare is left
    packed = sys.getsizeof(s.times), sys.getsizeof(s.rows)
    feed(s, [(40.0, histogram(40, 40, (40, 40, 40)))], retention=30.0)  # a row leaves, one comes: no regrowth
    assert (sys.getsizeof(s.times), sys.getsizeof(s.rows)) == packed
