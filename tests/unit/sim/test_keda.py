"""KEDA's operator rules and the emulator's schedule, pinned to KEDA's documented defaults."""

from __future__ import annotations

from scaler.otlp import Kind, Sample
from scaler.sim.keda import (
    Fallback,
    KedaActivation,
    KedaHpaEmulator,
    ScaledObject,
    Trigger,
    TriggerAnswer,
    triggers_asker,
)
from scaler.store import Store
from scaler.triggers import Triggers

TRIGGER = Trigger.of({"metricQuery": "sum(vllm:num_requests_running)", "targetValue": "4"})


def so(**changes: object) -> ScaledObject:
    return ScaledObject("ns", "qwen", (TRIGGER,), **changes)  # type: ignore[arg-type]


def answer(value: float | None, active: bool | None = None) -> TriggerAnswer:
    if value is None:
        return TriggerAnswer.failed("UNAVAILABLE: stale", "m", 4.0)
    return TriggerAnswer("m", 4.0, value, value > 0 if active is None else active)


def test_defaults_are_keda_and_kubernetes_defaults() -> None:
    spec = ScaledObject("ns", "x", (TRIGGER,))
    assert (spec.polling_interval, spec.cooldown_period, spec.min_replicas, spec.max_replicas) == (30, 300, 0, 100)
    assert (spec.hpa_sync_period, spec.tolerance) == (15, 0.1)
    assert spec.behavior.scale_down.stabilization_window == 300 and spec.behavior.scale_up.stabilization_window == 0


def test_activation_goes_from_zero_to_one_or_to_min() -> None:
    assert KedaActivation(so()).on_poll(0.0, 0, active=True, error=False) == (1, "activated: a trigger is active")
    assert KedaActivation(so(min_replicas=3)).on_poll(0.0, 0, True, False) == (3, "activated: a trigger is active")
    assert KedaActivation(so()).on_poll(0.0, 0, active=False, error=False) is None


def test_deactivation_waits_for_the_cooldown_since_the_last_active_poll() -> None:
    keda = KedaActivation(so())
    keda.on_poll(0.0, 1, active=True, error=False)
    assert keda.on_poll(30.0, 1, False, False) is None
    assert keda.on_poll(300.0, 1, False, False) is None  # exactly 300 s: not yet
    assert keda.on_poll(330.0, 1, False, False) == (0, "deactivated: no trigger active for cooldownPeriod")
    never_active = KedaActivation(so())
    assert never_active.on_poll(0.0, 2, False, False) is not None  # no LastActiveTime: no cooldown


def test_no_scale_to_zero_with_min_replicas_or_on_errors() -> None:
    assert KedaActivation(so(min_replicas=1)).on_poll(1000.0, 1, False, False) is None
    assert KedaActivation(so(min_replicas=2)).on_poll(1000.0, 1, False, False) == (2, "raised to minReplicaCount")
    assert KedaActivation(so()).on_poll(1000.0, 3, active=False, error=True) is None  # missing data holds


def test_the_emulator_polls_every_polling_interval_and_syncs_the_hpa_every_15s() -> None:
    asked: list[float] = []

    def ask(_: ScaledObject, __: Trigger, now: float) -> TriggerAnswer:
        asked.append(now)
        return answer(12.0)

    emulator = KedaHpaEmulator(so(polling_interval=30.0), start=0.0)
    replicas = 0
    for t in range(61):
        for decision in emulator.step(float(t), replicas, ask):
            replicas = decision.replicas
    assert asked == [0.0, 15.0, 30.0, 45.0, 60.0]
    assert [(d.at, d.by, d.replicas) for d in emulator.history] == [(0.0, "keda", 1), (0.0, "hpa", 3)]


def test_fallback_replaces_a_failing_metric_after_failure_threshold() -> None:
    emulator = KedaHpaEmulator(so(min_replicas=1, fallback=Fallback(3, 6), polling_interval=15.0), start=0.0)
    replicas, seen = 2, []
    for t in range(0, 91, 15):
        for decision in emulator.step(float(t), replicas, lambda *_: answer(None)):
            replicas = decision.replicas
        seen.append(replicas)
    assert seen == [2, 2, 2, 6, 6, 6, 6]  # the 4th failure (> 3) reads as 6 x target


def test_without_fallback_failures_hold_the_replicas() -> None:
    emulator = KedaHpaEmulator(so(), start=0.0)
    for t in range(0, 1000, 15):
        assert emulator.step(float(t), 4, lambda *_: answer(None)) == []


def test_stream_is_active_activates_at_once() -> None:
    emulator = KedaHpaEmulator(so(), start=0.0)
    decision = emulator.on_push_active(3.0, 0)
    assert decision is not None and (decision.replicas, decision.by) == (1, "keda")
    assert emulator.on_push_active(4.0, 1) is None


def test_triggers_asker_answers_from_the_scaler_core() -> None:
    store = Store(60.0, 100)
    others = (("k8s.pod.name", "other-0"), ("k8s.namespace.name", "elsewhere"))  # the scaler is reached
    store.append([Sample("vllm:kv_cache_usage_perc", others, Kind.GAUGE, 0.5)], 0.0)
    triggers = Triggers(store, stale_after=10.0, warmup_until=5.0)
    ask = triggers_asker(triggers.evaluate)
    early = ask(so(), TRIGGER, 0.0)
    assert early.value is None and early.error is not None and "warming up" in early.error
    later = ask(so(), TRIGGER, 10.0)
    assert (later.value, later.active, later.target) == (0.0, False, 4.0) and later.metric_name
    bad = ask(so(), Trigger.of({"metricQuery": "sum(x)"}), 10.0)
    assert bad.error is not None and "targetValue" in bad.error
