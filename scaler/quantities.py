"""Numbers in trigger metadata: plain decimals, or Kubernetes quantity strings as KServe writes them.

KServe v0.15 wrote `targetValue` with `"%f"` (`"4.000000"`); from v0.16 it passes the original
quantity string of the InferenceService (`"500m"`, `"2k"`), see KServe's
`pkg/controller/v1beta1/inferenceservice/reconcilers/keda/keda_reconciler.go` (`getOriginalStringMQ`).
The grammar is Kubernetes' `resource.Quantity` (apimachinery `pkg/api/resource/quantity.go`).
"""

from __future__ import annotations

import math
import re

_QUANTITY = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+|[numkMGTPE])?")
_SUFFIXES = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
EXPECTED = "expected a number or a Kubernetes quantity, like 4, 0.5, 500m, 2k or 1.5Mi"


def parse_quantity(text: str) -> float:
    """The value of `4`, `4.000000`, `-2`, `500m`, `2k`, `1.5Mi` or `1e3`; ValueError naming the text otherwise."""
    found = _QUANTITY.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a number: {EXPECTED}")
    number, suffix = found.group(1), found.group(2) or ""
    exponent = suffix[:1] in ("e", "E")
    value = float(number + suffix) if exponent else float(number) * _SUFFIXES.get(suffix, 1.0)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is too large to be a finite number")
    return value
