"""A pod's metrics: computed from engine state, exposed with vLLM's names, HELP texts and buckets."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from scaler.names import canonical_name
from scaler.otlp import Kind
from scaler.sim import vllm_metrics as vm
from scaler.sim.engine import RequestSpec
from scaler.sim.exposition import render
from scaler.sim.otlp_push import decoded_samples, pod_metrics, snapshot_samples
from scaler.sim.pod import PodIdentity, SimPod
from scaler.sim.profiles import DEMO

VLLM_TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                     20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]  # fmt: skip
VLLM_ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                    40.0, 80.0]  # fmt: skip
VLLM_LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                        240.0, 480.0, 960.0, 1920.0, 7680.0]  # fmt: skip


def busy_pod(engines: int = 1, name: str = "p-1") -> SimPod:
    pod = SimPod(PodIdentity(name, "qwen-predictor", "ns"), DEMO, created=1_700_000_000.0, data_parallel_size=engines)
    for i in range(3):
        pod.submit(RequestSpec(f"done{i}", 10, 2), 0.0)
    for i in range(12):
        pod.submit(RequestSpec(f"r{i}", 100, 50), 0.0)
    pod.advance(1.0)
    return pod


def test_gauges_and_counters_come_from_the_engine() -> None:
    snapshot = busy_pod().snapshot()
    assert snapshot.total(vm.RUNNING) == DEMO.max_num_seqs
    assert snapshot.total(vm.WAITING) == 12 - DEMO.max_num_seqs  # 3 short ones done, 8 running
    assert 0 < snapshot.total(vm.KV_USAGE) < 1
    assert snapshot.total(vm.REQUEST_SUCCESS, finished_reason="length") == 3
    assert snapshot.total(vm.TTFT) >= 3 and snapshot.total(vm.E2E) == 3
    assert snapshot.total(vm.GENERATION_TOKENS) > 0 and snapshot.total(vm.PROMPT_TOKENS) > 0


def test_exposition_has_vllm_names_help_texts_and_bucket_bounds() -> None:
    text = render(busy_pod(engines=2).snapshot()).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["vllm:num_requests_running"].documentation == "Number of requests in model execution batches."
    assert families["vllm:kv_cache_usage_perc"].documentation == "KV-cache usage. 1 means 100 percent usage."
    assert families["vllm:prompt_tokens"].type == "counter"
    assert "vllm:prompt_tokens_total{" in text and "vllm:prompt_tokens_created{" in text
    assert 'finished_reason="abort"' in text  # vLLM creates every reason's series up front
    for name, bounds in (
        ("vllm:time_to_first_token_seconds", VLLM_TTFT_BUCKETS),
        ("vllm:inter_token_latency_seconds", VLLM_ITL_BUCKETS),
        ("vllm:e2e_request_latency_seconds", VLLM_LATENCY_BUCKETS),
        ("vllm:request_queue_time_seconds", VLLM_LATENCY_BUCKETS),
    ):
        family = families[name]
        assert family.type == "histogram"
        les = sorted({float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")})
        assert les == [*bounds, float("inf")]
        assert {s.labels["engine"] for s in family.samples} == {"0", "1"}
        assert {s.labels["model_name"] for s in family.samples} == {"qwen"}


def test_legacy_names_use_the_older_vllm_spelling() -> None:
    text = render(busy_pod().snapshot(), vm.MetricNaming(version="0.6")).decode()
    assert "# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage." in text
    assert "vllm:time_per_output_token_seconds_bucket" in text and "kv_cache_usage_perc" not in text


def test_otlp_carries_the_pod_identity_and_colon_or_dotted_names() -> None:
    snapshot = busy_pod().snapshot()
    colon = pod_metrics(snapshot)
    assert colon.resource["k8s.pod.name"] == "p-1" and colon.resource["k8s.namespace.name"] == "ns"
    assert colon.resource["k8s.deployment.name"] == "qwen-predictor" and colon.resource["role"] == "unified"
    assert "vllm:prompt_tokens_total" in colon.counters and "vllm:num_requests_running" in colon.gauges
    dotted = pod_metrics(snapshot, vm.MetricNaming(dotted=True))
    assert "vllm.prompt_tokens" in dotted.counters and "vllm.num_requests_running" in dotted.gauges
    canonical = {canonical_name(n) for n in (*colon.counters, *colon.gauges, *colon.histograms)}
    assert canonical == {canonical_name(n) for n in (*dotted.counters, *dotted.gauges, *dotted.histograms)}


def test_fast_samples_equal_what_the_receiver_decodes() -> None:
    snapshots = [busy_pod(engines=2).snapshot(), busy_pod(name="p-2").snapshot()]
    for naming in (vm.MetricNaming(), vm.MetricNaming(dotted=True), vm.MetricNaming(version="0.6")):

        def key(s: object) -> tuple[str, tuple[tuple[str, str], ...]]:
            return (s.name, s.labels)  # type: ignore[attr-defined]

        slow = sorted(decoded_samples(snapshots, 1_700_000_001_000_000_000, naming), key=key)
        fast = sorted(snapshot_samples(snapshots, naming), key=key)
        assert fast == slow
    kinds = {s.name: s.kind for s in fast}
    assert kinds["vllm:prompt_tokens"] is Kind.COUNTER and kinds["vllm:num_requests_running"] is Kind.GAUGE
    assert kinds["vllm:inter_token_latency_seconds"] is Kind.HISTOGRAM
