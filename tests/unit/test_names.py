"""Canonical metric names, label aliases and a series' pod identity."""

from __future__ import annotations

import pytest

from scaler.names import canonical_name, label_value, pod_of


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("vllm.num_requests_running", "vllm:num_requests_running"),
        ("vllm:num_requests_running", "vllm:num_requests_running"),
        ("vllm:prompt_tokens_total", "vllm:prompt_tokens"),
        ("vllm.prompt_tokens_total", "vllm:prompt_tokens"),
        ("vllm:prompt_tokens", "vllm:prompt_tokens"),
        ("vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"),
        ("vllm.gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"),
        ("vllm:kv_cache_usage_perc", "vllm:kv_cache_usage_perc"),
        ("vllm:time_per_output_token_seconds", "vllm:inter_token_latency_seconds"),
        ("vllm.time_per_output_token_seconds", "vllm:inter_token_latency_seconds"),
        ("vllm:inter_token_latency_seconds", "vllm:inter_token_latency_seconds"),
        ("http_requests_total", "http_requests"),
        ("process_cpu_seconds", "process_cpu_seconds"),
        # only the leading prefix is rewritten
        ("myvllm.x", "myvllm.x"),
        ("vllm.a.b", "vllm:a.b"),
    ],
)
def test_canonical_name(name: str, canonical: str) -> None:
    assert canonical_name(name) == canonical


def test_created_gauge_stays_distinct_from_its_counter() -> None:
    counter = canonical_name("vllm:request_success_total")
    created = canonical_name("vllm:request_success_created")
    assert counter == "vllm:request_success"
    assert created == "vllm:request_success_created"
    assert counter != created
    assert canonical_name("vllm.request_success_created") == "vllm:request_success_created"


def test_canonical_name_is_idempotent() -> None:
    for name in ["vllm.gpu_cache_usage_perc", "vllm:x_total", "vllm.time_per_output_token_seconds", "a_total"]:
        once = canonical_name(name)
        assert canonical_name(once) == once


@pytest.mark.parametrize(
    ("labels", "pod"),
    [
        ({"k8s.pod.name": "a", "pod": "b", "service.instance.id": "c", "namespace": "ns"}, "ns/a"),
        ({"pod": "b", "service.instance.id": "c", "namespace": "ns"}, "ns/b"),
        ({"service.instance.id": "c", "namespace": "ns"}, "ns/c"),
        ({"k8s.pod.name": "a", "k8s.namespace.name": "prod"}, "prod/a"),
        ({"pod": "b"}, "/b"),
        # an empty value does not count: the next key is used
        ({"k8s.pod.name": "", "pod": "b", "namespace": "ns"}, "ns/b"),
        ({"namespace": "ns"}, ""),
        ({}, ""),
    ],
)
def test_pod_of_precedence_and_namespacing(labels: dict[str, str], pod: str) -> None:
    assert pod_of(labels) == pod


def test_same_pod_name_in_two_namespaces_is_two_pods() -> None:
    assert pod_of({"pod": "p", "namespace": "a"}) != pod_of({"pod": "p", "namespace": "b"})


@pytest.mark.parametrize(
    ("labels", "label", "value"),
    [
        ({"namespace": "ns"}, "namespace", "ns"),
        ({"k8s.namespace.name": "ns"}, "namespace", "ns"),
        ({"namespace": "plain", "k8s.namespace.name": "otel"}, "namespace", "plain"),
        ({"k8s.deployment.name": "d"}, "deployment", "d"),
        ({"k8s.pod.name": "p"}, "pod", "p"),
        ({"k8s.pod.name": "p"}, "k8s.pod.name", "p"),
        ({"model": "llama"}, "model", "llama"),
        ({"model": "llama"}, "missing", ""),
        ({"k8s.namespace.name": "ns"}, "k8s.namespace.name", "ns"),
        # aliases run one way only: the semantic-convention key does not read `namespace`
        ({"namespace": "ns"}, "k8s.namespace.name", ""),
    ],
)
def test_label_value_looks_through_aliases(labels: dict[str, str], label: str, value: str) -> None:
    assert label_value(labels, label) == value


def test_a_name_that_is_only_the_suffix_is_kept() -> None:
    assert canonical_name("_total") == "_total"
