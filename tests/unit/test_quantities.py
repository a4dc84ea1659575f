"""Numbers in trigger metadata may be Kubernetes quantities, as KServe 0.16 and later write them.

KServe v0.15 wrote `fmt.Sprintf("%f", ...)` ("4.000000"); v0.16 passes `MetricQuantity.GetOriginal()`
(KServe `pkg/controller/v1beta1/inferenceservice/reconcilers/keda/keda_reconciler.go`, `getOriginalStringMQ`).
"""

from __future__ import annotations

import pytest

from scaler.errors import InvalidTrigger
from scaler.policy_spec import PolicySpec
from scaler.quantities import parse_quantity
from scaler.triggers import QueryTrigger, parse_trigger


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", 4.0),
        ("4.000000", 4.0),
        ("0.5", 0.5),
        (".5", 0.5),
        ("5.", 5.0),
        ("-2", -2.0),
        ("+3", 3.0),
        ("500m", 0.5),
        ("2k", 2000.0),
        ("3M", 3e6),
        ("1G", 1e9),
        ("250u", 250e-6),
        ("100n", 100e-9),
        ("1.5Mi", 1.5 * 2**20),
        ("1Ki", 1024.0),
        ("2Gi", 2.0 * 2**30),
        ("1e3", 1000.0),
        ("1E-3", 0.001),
        ("12e+2", 1200.0),
        (" 4 ", 4.0),
    ],
)
def test_quantities(text: str, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "abc", "nan", "inf", "1_000", "4x", "1KiB", "m", "1 k", "0x10", "1e999"])
def test_not_quantities(text: str) -> None:
    with pytest.raises(ValueError, match="number"):
        parse_quantity(text)


def test_kserve_016_target_as_a_quantity() -> None:
    spec = parse_trigger(
        {
            "metricQuery": 'sum(vllm:num_requests_running{namespace="ns", deployment="d"})',
            "targetValue": "500m",
            "activationThreshold": "1k",
            "clampMin": "100m",
            "clampMax": "2k",
        }
    )
    assert isinstance(spec, QueryTrigger)
    assert (spec.target, spec.activation_threshold, spec.clamp_min, spec.clamp_max) == (0.5, 1000.0, 0.1, 2000.0)


def test_a_bad_quantity_names_the_key_and_the_form() -> None:
    with pytest.raises(InvalidTrigger, match=r"targetValue: '4 pods' is not a number: expected .*500m"):
        parse_trigger({"metricQuery": "q", "targetValue": "4 pods"})


def test_policy_numbers_read_quantities_too() -> None:
    spec = parse_trigger({"policy": "vllm", "deployment": "d", "targetKvCacheUsage": "800m", "ttftSeconds": "500m"})
    assert isinstance(spec, PolicySpec)
    assert (spec.target_kv, spec.ttft) == (0.8, 0.5)
