"""Duration strings such as `500ms`, `30s`, `5m`, `1h30m`, turned into seconds, and back for display.

`duration_argument` and `positive_duration_argument` are the same parsing as argparse `type=`s, so a
bad command-line value is reported with the flag and the expected form.
"""

from __future__ import annotations

import argparse
import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_BARE_NUMBER = re.compile(r"\d+(?:\.\d+)?")
EXPECTED = "expected a number with a unit, like 30s, 500ms, 5m or 1h30m"


def parse_duration(text: str) -> float:
    """Return seconds for a duration like `30s`; raise ValueError naming the text otherwise.

    A bare number is not accepted: `30` could mean seconds or milliseconds, so we ask for the unit.
    """
    stripped = text.strip()
    pos = 0
    total = 0.0
    for match in _PART.finditer(stripped):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(stripped) or not math.isfinite(total):
        raise ValueError(f"invalid duration {text!r}: {_hint(stripped)}")
    return total


def _hint(stripped: str) -> str:
    if _BARE_NUMBER.fullmatch(stripped):
        return f"a number needs a unit: write {stripped}s for seconds (or 500ms, 5m, 1h30m)"
    if stripped[:1] in "-+" and stripped[1:2].isdigit():
        return f"must not be negative or signed; {EXPECTED}"
    return EXPECTED


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration for display: 30.0 -> '30s', 0.5 -> '500ms'."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def duration_argument(text: str) -> float:
    """argparse `type=`: a duration, 0 included."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_duration_argument(text: str) -> float:
    """argparse `type=`: a duration longer than 0."""
    value = duration_argument(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be longer than 0")
    return value
