"""Canonical metric names, label aliases and a series' pod identity."""

from __future__ import annotations

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from scaler.names import canonical_name, label_value, pod_of
from scaler.otlp import decode_export_request
from scaler.store import Store
from scaler.triggers import Triggers


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
        # kedify's escaping: `.` and `/` are `_` wherever they stand; only a leading `vllm_` becomes `vllm:`
        ("myvllm.x", "myvllm_x"),
        ("vllm.a.b", "vllm:a_b"),
        ("vcs.change.duration", "vcs_change_duration"),
        ("vcs_change_duration", "vcs_change_duration"),
        ("http.server/duration", "http_server_duration"),
        ("vllm_num_requests_running", "vllm:num_requests_running"),
        ("metric-404", "metric-404"),
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


def test_kedify_escaped_names_are_one_metric() -> None:
    """kedify stores and queries `escapeName(name)`: `.` and `/` become `_` (kedify otel-add-on
    `metric/mem_store.go`, `escapeName`, called by both `Put` and `Get`)."""
    variants = ["vllm_num_requests_running", "vllm.num_requests_running", "vllm:num_requests_running"]
    assert {canonical_name(v) for v in variants} == {"vllm:num_requests_running"}
    assert canonical_name("vcs.change.duration") == canonical_name("vcs_change_duration")


def test_histograms_keep_their_name_whatever_it_ends_with() -> None:
    """vLLM 0.33's `vllm:iteration_tokens_total` is a histogram: its `_total` is part of its name."""
    assert canonical_name("vllm:iteration_tokens_total", histogram=True) == "vllm:iteration_tokens_total"
    assert canonical_name("vllm.iteration_tokens_total", histogram=True) == "vllm:iteration_tokens_total"
    assert canonical_name("vllm:time_per_output_token_seconds", histogram=True) == "vllm:inter_token_latency_seconds"
    assert canonical_name("vllm:iteration_tokens_total") == "vllm:iteration_tokens"  # a counter's would go


def _request(*metrics: dict[str, object]) -> ExportMetricsServiceRequest:
    resource = {"attributes": [{"key": "k8s.pod.name", "value": {"stringValue": "p0"}}]}
    body = {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": list(metrics)}]}]}
    return json_format.ParseDict(body, ExportMetricsServiceRequest())


def _evaluate(request: ExportMetricsServiceRequest, query: str) -> float:
    store = Store(retention=60.0, max_series=100)
    store.append(decode_export_request(request).samples, now=1.0)
    triggers = Triggers(store, stale_after=30.0, warmup_until=0.0)
    return triggers.evaluate("ns", "so", {"metricQuery": query, "targetValue": "1"}, now=2.0).value


def _gauge(name: str, value: float) -> dict[str, object]:
    return {"name": name, "gauge": {"dataPoints": [{"asDouble": value, "timeUnixNano": "1"}]}}


@pytest.mark.parametrize(
    ("stored", "queried"),
    [
        ("vcs.change.duration", "vcs_change_duration"),  # kedify's otel-operator example
        ("vcs.change.duration", "vcs.change.duration"),
        ("http/server.duration", "http_server_duration"),
        ("vllm:num_requests_running", "vllm_num_requests_running"),
        ("vllm.num_requests_running", "vllm_num_requests_running"),
        ("vllm_num_requests_running", "vllm:num_requests_running"),
        ("metric-404", "metric-404"),  # hyphens are allowed in kedify's names
        ("metric-404", 'sum(metric-404{pod="p0"})'),
    ],
)
def test_escaped_names_find_the_stored_metric(stored: str, queried: str) -> None:
    assert _evaluate(_request(_gauge(stored, 7.0)), queried) == 7.0


def test_a_histogram_named_total_answers_to_count_and_sum() -> None:
    """vLLM 0.33's `vllm:iteration_tokens_total` is a histogram; `_count`/`_sum` find it."""
    point = {"count": "4", "sum": 96.0, "bucketCounts": ["1", "3"], "explicitBounds": [16.0], "timeUnixNano": "1"}
    histogram = {
        "name": "vllm:iteration_tokens_total",
        "histogram": {"dataPoints": [point], "aggregationTemporality": 2},
    }
    request = _request(histogram)
    assert _evaluate(request, "sum(vllm:iteration_tokens_total_count)") == 4.0
    assert _evaluate(request, "sum(vllm:iteration_tokens_total_sum)") == 96.0
