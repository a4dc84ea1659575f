"""Duration strings such as `500ms`, `30s`, `5m`, `1h30m`, turned into seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


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
        raise ValueError(f"invalid duration {text!r}: use a number with a unit, like 500ms, 30s, 5m or 1h")
    return total


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration for display: 30.0 -> '30s', 0.5 -> '500ms'."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"
