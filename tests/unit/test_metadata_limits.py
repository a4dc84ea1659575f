"""Trigger metadata, ScaledObject names and namespaces are bounded: 40 values of 3.5 MB kept 135–172 MB."""

from __future__ import annotations

import tracemalloc

import pytest

from scaler.errors import InvalidTrigger, LimitExceeded
from scaler.otlp import Kind, Sample
from scaler.store import Store
from scaler.triggers import MAX_METADATA_VALUE, MAX_OBJECT_NAME, Triggers, parse_trigger

META = {"metricQuery": "sum(m)", "targetValue": "1"}


def received_store() -> Store:
    """A store that has received a datapoint, so a query that never matched reads 0."""
    store = Store(retention=60.0, max_series=10)
    store.append([Sample("other", (("namespace", "elsewhere"),), Kind.GAUGE, 1.0)], now=0.0)
    return store


def make() -> Triggers:
    return Triggers(received_store(), stale_after=30.0, warmup_until=0.0)


def test_a_long_value_is_invalid_naming_its_key() -> None:
    with pytest.raises(InvalidTrigger, match=f"window: longer than {MAX_METADATA_VALUE} characters"):
        parse_trigger({**META, "window": "1" * 3_500_000})


def test_a_long_unknown_key_is_invalid_and_not_echoed_whole() -> None:
    with pytest.raises(InvalidTrigger) as info:
        parse_trigger({**META, "k" * 100_000: "v"})
    assert len(str(info.value)) < 200


def test_keda_keys_may_be_long_and_are_not_kept() -> None:
    """KEDA passes caCert/tlsClientCert PEMs and resolved *FromEnv values; they are dropped before caching."""
    pem = "-----BEGIN CERTIFICATE-----\n" + "A" * 20_000 + "\n-----END CERTIFICATE-----\n"
    spec = parse_trigger({**META, "caCert": pem, "passwordFromEnv": "x" * 20_000})
    assert spec == parse_trigger(META)


@pytest.mark.parametrize("field", ["name", "namespace"])
@pytest.mark.parametrize("entry", ["evaluate", "prepare"])  # prepare: an open StreamIsActive's trigger
def test_long_scaledobject_names_and_namespaces_are_invalid(field: str, entry: str) -> None:
    triggers = make()
    names = {"namespace": "ns", "name": "so", field: "x" * (MAX_OBJECT_NAME + 1)}
    with pytest.raises(InvalidTrigger, match=f"{field} is longer than {MAX_OBJECT_NAME}"):
        if entry == "evaluate":
            triggers.evaluate(names["namespace"], names["name"], META, now=1.0)
        else:
            triggers.prepare(names["namespace"], names["name"], META)
    assert list(triggers.states()) == []


def test_a_prepared_trigger_is_the_same_trigger_as_the_one_evaluated_by_name() -> None:
    """A stream's trigger is parsed once when it opens; its answers and remembered state are the ones
    GetMetrics sees for the same ScaledObject."""
    triggers = make()
    triggers.store.append([Sample("m", (("namespace", "ns"),), Kind.GAUGE, 3.0)], now=1.0)
    prepared = triggers.prepare("ns", "so", META)
    assert prepared.spec == parse_trigger(META, "ns")
    assert triggers.evaluate_prepared(prepared, now=2.0).value == 3.0
    triggers.store.append([Sample("m", (("namespace", "ns"),), Kind.GAUGE, 5.0)], now=3.0)
    assert triggers.evaluate("ns", "so", META, now=4.0).value == 5.0
    assert triggers.evaluate_prepared(prepared, now=4.0).value == 5.0
    assert len(list(triggers.states())) == 1


def test_remembered_triggers_are_capped_and_freed_when_idle() -> None:
    triggers = Triggers(received_store(), stale_after=30.0, warmup_until=0.0, max_triggers=3)
    for index in range(3):
        triggers.evaluate("ns", f"so-{index}", META, now=1.0)
    triggers.evaluate("ns", "so-0", META, now=2.0)  # a known trigger is still answered
    with pytest.raises(LimitExceeded, match="3 triggers are remembered already"):
        triggers.evaluate("ns", "so-new", META, now=2.0)
    assert triggers.expire(now=2.0 + 601.0) == 3
    assert triggers.evaluate("ns", "so-new", META, now=603.0).value == 0.0


def test_forty_huge_from_env_values_and_names_keep_nothing() -> None:
    """40 × 3.5 MB `*FromEnv` values or ScaledObject names kept 135–172 MB; now they keep nothing."""
    triggers = make()
    huge = "x" * 3_500_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(40):
            triggers.evaluate("ns", f"so-{index}", {**META, "tokenFromEnv": huge + str(index)}, now=1.0)
            with pytest.raises(InvalidTrigger):
                triggers.evaluate("ns", huge + str(index), META, now=1.0)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 5_000_000, f"{kept / 1e6:.1f} MB kept"
