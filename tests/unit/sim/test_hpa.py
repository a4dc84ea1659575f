"""The HPA's rules, pinned to the documented numbers (kubernetes.io HPA docs, replica_calculator.go)."""

from __future__ import annotations

import pytest

from scaler.sim.hpa import (
    AVERAGE_VALUE,
    VALUE,
    Behavior,
    HorizontalPodAutoscaler,
    MetricReading,
    ScalingPolicy,
    ScalingRules,
    hpa_desired_replicas,
)


def avg(value: float | None, target: float = 4.0) -> MetricReading:
    return MetricReading(value, target, AVERAGE_VALUE)


def test_average_value_is_ceil_of_sum_over_target() -> None:
    assert hpa_desired_replicas(1, [avg(12.0)]) == 3  # KServe's example: 12 running, target 4
    assert hpa_desired_replicas(1, [avg(12.1)]) == 4
    assert hpa_desired_replicas(5, [avg(0.0)]) == 0  # the HPA's min clamps this later


def test_tolerance_is_ten_percent_either_way() -> None:
    # current 3, target 4: ratio sum / 12 within [0.9, 1.1] keeps 3 replicas
    assert hpa_desired_replicas(3, [avg(13.2)]) == 3  # ratio 1.1
    assert hpa_desired_replicas(3, [avg(13.3)]) == 4  # ratio 1.108
    assert hpa_desired_replicas(3, [avg(10.8)]) == 3  # ratio 0.9
    assert hpa_desired_replicas(3, [avg(10.7)]) == 3  # ratio 0.89: ceil(2.675) = 3 anyway
    assert hpa_desired_replicas(10, [avg(35.0)]) == 9  # ratio 0.875 -> ceil(8.75)


def test_value_scales_the_ready_pods_by_the_ratio() -> None:
    assert hpa_desired_replicas(2, [MetricReading(6.0, 2.0, VALUE)], ready=2) == 6
    assert hpa_desired_replicas(2, [MetricReading(2.1, 2.0, VALUE)], ready=2) == 2  # within tolerance
    assert hpa_desired_replicas(0, [MetricReading(3.0, 2.0, VALUE)]) == 2  # from zero: ceil(ratio)


def test_several_metrics_take_the_largest_and_failures_block_scale_down() -> None:
    assert hpa_desired_replicas(2, [avg(4.0), avg(20.0)]) == 5
    assert hpa_desired_replicas(4, [avg(None), avg(40.0)]) == 10  # scale-up goes ahead
    assert hpa_desired_replicas(4, [avg(None), avg(4.0)]) is None  # would go down with a metric missing: hold
    assert hpa_desired_replicas(4, [avg(None)]) is None


def test_values_are_milli_quantities() -> None:
    assert hpa_desired_replicas(1, [avg(4.0004)]) == 1  # 4000m exactly after int(value * 1000)


def test_default_scale_up_allows_doubling_or_four_pods_per_15s() -> None:
    hpa = HorizontalPodAutoscaler(1, 100)
    assert hpa.reconcile(0.0, 1, [avg(400.0)]).replicas == 5  # max(1 + 4, 1 * 2)
    assert hpa.reconcile(5.0, 5, [avg(400.0)]).replicas == 5  # within the same 15 s period: no more
    assert hpa.reconcile(15.1, 5, [avg(400.0)]).replicas == 10  # max(5 + 4, 5 * 2)
    assert hpa.reconcile(30.2, 10, [avg(400.0)]).replicas == 20
    assert hpa.reconcile(45.3, 20, [avg(400.0)]).replicas == 40
    assert hpa.reconcile(60.4, 40, [avg(400.0)]).replicas == 80
    assert hpa.reconcile(75.5, 80, [avg(400.0)]).replicas == 100  # maxReplicas


def test_scale_up_has_no_stabilization_window() -> None:
    hpa = HorizontalPodAutoscaler(1, 10)
    assert hpa.reconcile(0.0, 2, [avg(4.0)]).replicas == 1
    assert hpa.reconcile(15.0, 1, [avg(12.0)]).replicas == 3  # immediately


def test_scale_down_waits_for_the_300s_stabilization_window() -> None:
    hpa = HorizontalPodAutoscaler(1, 10)
    assert hpa.reconcile(0.0, 5, [avg(20.0)]).replicas == 5
    for t in range(15, 300, 15):  # the recommendation at t=0 (5) is the highest within 300 s
        assert hpa.reconcile(float(t), 5, [avg(4.0)]).replicas == 5, t
    # at 300 s the t=0 recommendation is no longer after the cutoff; 100 % per 15 s lets it drop at once
    assert hpa.reconcile(300.0, 5, [avg(4.0)]).replicas == 1


def test_custom_policies_and_select_policy() -> None:
    slow_down = ScalingRules(0.0, (ScalingPolicy("Pods", 1, 60.0),))
    hpa = HorizontalPodAutoscaler(1, 10, Behavior(scale_down=slow_down))
    assert hpa.reconcile(0.0, 5, [avg(4.0)]).replicas == 4
    assert hpa.reconcile(15.0, 4, [avg(4.0)]).replicas == 4  # one pod per 60 s
    assert hpa.reconcile(61.0, 4, [avg(4.0)]).replicas == 3
    least = ScalingRules(0.0, (ScalingPolicy("Percent", 100, 15.0), ScalingPolicy("Pods", 4, 15.0)), "Min")
    hpa = HorizontalPodAutoscaler(1, 100, Behavior(scale_up=least))
    assert hpa.reconcile(0.0, 10, [avg(400.0)]).replicas == 14  # min(10 + 4, 10 * 2)
    frozen = HorizontalPodAutoscaler(1, 100, Behavior(scale_up=ScalingRules(0.0, (), "Disabled")))
    assert frozen.reconcile(0.0, 3, [avg(400.0)]).replicas == 3


def test_bounds_and_zero() -> None:
    hpa = HorizontalPodAutoscaler(2, 4)
    assert hpa.reconcile(0.0, 0, [avg(100.0)]).replicas == 0  # scaled to zero: KEDA's job, not the HPA's
    assert hpa.reconcile(0.0, 1, [avg(0.0)]).replicas == 2
    assert hpa.reconcile(15.0, 9, [avg(0.0)]).replicas == 4
    with pytest.raises(ValueError):
        HorizontalPodAutoscaler(0, 4)
