"""Duration strings: a number with a unit, summed over parts; never a bare number."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("2h0m5s", 7205.0),
        ("1.5s", 1.5),
        ("0.25h", 900.0),
        ("1s500ms", 1.5),
        ("0s", 0.0),
        ("  45s  ", 45.0),
    ],
)
def test_parses_units_and_compound_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "0", "1.5", "-5s", "+5s"])
def test_rejects_bare_or_signed_numbers(text: str) -> None:
    with pytest.raises(ValueError, match="unit"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "s",
        "ms",
        "abc",
        "30x",
        "30 s",
        "5m junk",
        "junk5m",
        "1h30",
        "30sec",
        "5d",
        "1e3s",
        "1,5s",
        "9" * 400 + "s",
    ],
)
def test_rejects_junk_and_empty(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"), [(30.0, "30s"), (0.5, "500ms"), (0.0, "0s"), (90.0, "90s"), (0.001, "1ms")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(min_value=0, max_value=10**6))
def test_format_then_parse_round_trips_whole_milliseconds(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=30))
def test_arbitrary_text_is_a_duration_or_a_value_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert value >= 0
