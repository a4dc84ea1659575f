"""The simulated pod exports as vLLM 0.33 does, and as 0.10 and 0.6 did with `--vllm-version`."""

from __future__ import annotations

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as PromSample

from scaler.otlp import Sample
from scaler.policy import pool_metrics
from scaler.policy_spec import parse_policy
from scaler.signals import read_pool
from scaler.sim import cli
from scaler.sim import vllm_metrics as vm
from scaler.sim.engine import RequestSpec
from scaler.sim.exposition import render
from scaler.sim.histogram import Histogram
from scaler.sim.otlp_push import decoded_samples, snapshot_samples
from scaler.sim.pod import PodIdentity, SimPod
from scaler.sim.profiles import DEMO
from scaler.store import Store

ITERATION_TOKENS_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]  # loggers.py


def decode_pod(engines: int = 1) -> SimPod:
    """A decode pod with 12 local requests (max_num_seqs run, the rest queue) and 3 whose KV is in transit."""
    pod = SimPod(PodIdentity("d-1", "qwen-decode", "ns", "decode"), DEMO, created=1e9, data_parallel_size=engines)
    for i in range(12):
        pod.submit(RequestSpec(f"r{i}", 100, 50), 0.0)
    for i in range(3):
        pod.submit(RequestSpec(f"kv{i}", 100, 50, kv_transfer_seconds=30.0), 0.0)
    pod.advance(1.0)
    return pod


def families(pod: SimPod, version: str = "0.33") -> dict[str, Metric]:
    text = render(pod.snapshot(), vm.MetricNaming(version=version)).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(family: Metric, suffix: str = "") -> list[PromSample]:
    return [s for s in family.samples if s.name == family.name + suffix]


def test_waiting_by_reason_splits_num_requests_waiting_as_upstream() -> None:
    found = families(decode_pod())
    split = found["vllm:num_requests_waiting_by_reason"]
    assert split.type == "gauge"
    assert split.documentation == (
        "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; "
        "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). "
        "Sum of all reasons equals vllm:num_requests_waiting."
    )
    by_reason = {s.labels["reason"]: s.value for s in samples(split)}
    assert by_reason == {"capacity": 12.0 - DEMO.max_num_seqs, "deferred": 3.0}
    assert samples(found["vllm:num_requests_waiting"])[0].value == sum(by_reason.values())
    assert {s.labels["engine"] for s in samples(split)} == {"0"}


def test_engine_sleep_state_reports_awake() -> None:
    state = families(decode_pod(engines=2))["vllm:engine_sleep_state"]
    assert state.documentation.startswith("Engine sleep state; awake = 0 means engine is sleeping;")
    values = {(s.labels["engine"], s.labels["sleep_state"]): s.value for s in samples(state)}
    states = ("awake", "weights_offloaded", "discard_all")
    assert values == {(e, st): 1.0 if st == "awake" else 0.0 for e in ("0", "1") for st in states}


def test_finished_reasons_are_vllm_033s() -> None:
    reasons = {s.labels["finished_reason"] for s in samples(families(decode_pod())["vllm:request_success"], "_total")}
    assert reasons == {"stop", "length", "abort", "error", "repetition"}


def test_iteration_tokens_total_is_a_histogram_that_keeps_its_name() -> None:
    pod = decode_pod()
    hist = families(pod)["vllm:iteration_tokens_total"]
    assert hist.type == "histogram"
    assert hist.documentation == "Histogram of number of tokens per engine_step."
    les = [float(s.labels["le"]) for s in samples(hist, "_bucket")]
    assert les == [*map(float, ITERATION_TOKENS_BUCKETS), float("inf")]
    stats = pod.engines[0].stats
    assert samples(hist, "_sum")[0].value == stats.prompt_tokens + stats.generation_tokens  # every token, once
    names = {s.name for s in decoded_samples([pod.snapshot()], 2_000_000_000)}
    assert "vllm:iteration_tokens_total" in names and "vllm:iteration_tokens" not in names


def test_033_has_no_removed_names() -> None:
    found = families(decode_pod())
    assert "vllm:gpu_cache_usage_perc" not in found and "vllm:time_per_output_token_seconds" not in found
    assert "vllm:kv_cache_usage_perc" in found and "vllm:inter_token_latency_seconds" in found


def test_010_exports_both_kv_cache_names_and_only_tpot() -> None:
    found = families(decode_pod(), "0.10")
    old, new = found["vllm:gpu_cache_usage_perc"], found["vllm:kv_cache_usage_perc"]
    assert old.documentation.endswith("percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.")
    assert samples(old)[0].value == samples(new)[0].value > 0
    assert "vllm:time_per_output_token_seconds" in found and "vllm:inter_token_latency_seconds" not in found
    assert "vllm:num_requests_waiting_by_reason" not in found and "vllm:engine_sleep_state" not in found
    reasons = {s.labels["finished_reason"] for s in samples(found["vllm:request_success"], "_total")}
    assert reasons == {"stop", "length", "abort"}


def test_06_exports_the_v0_names_and_buckets_with_every_observation_kept() -> None:
    pod = decode_pod()
    for i in range(3):
        pod.submit(RequestSpec(f"short{i}", 10, 2), 1.0)
    pod.advance(30.0)
    found, new = families(pod, "0.6"), families(pod)
    assert "vllm:gpu_cache_usage_perc" in found and "vllm:kv_cache_usage_perc" not in found
    assert found["vllm:num_requests_running"].documentation == "Number of requests currently running on GPU."
    assert "vllm:request_queue_time_seconds" not in found and "vllm:iteration_tokens_total" not in found
    e2e = found["vllm:e2e_request_latency_seconds"]
    v0_e2e = [1, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, float("inf")]
    assert [float(s.labels["le"]) for s in samples(e2e, "_bucket")] == v0_e2e
    for name in ("vllm:e2e_request_latency_seconds", "vllm:time_to_first_token_seconds"):
        assert samples(found[name], "_count")[0].value == samples(new[name], "_count")[0].value > 0
        old_buckets = {s.labels["le"]: s.value for s in samples(found[name], "_bucket")}
        new_buckets = {s.labels["le"]: s.value for s in samples(new[name], "_bucket")}
        assert all(new_buckets[le] == v for le, v in old_buckets.items())  # cumulative counts agree where bounds do


def test_every_version_decodes_the_same_over_otlp_and_the_fast_path() -> None:
    snapshots = [decode_pod(engines=2).snapshot()]
    for version in vm.VERSIONS:
        for dotted in (False, True):
            naming = vm.MetricNaming(dotted=dotted, version=version)

            def key(s: Sample) -> tuple[str, tuple[tuple[str, str], ...]]:
                return (s.name, s.labels)

            slow = sorted(decoded_samples(snapshots, 2_000_000_000, naming), key=key)
            assert sorted(snapshot_samples(snapshots, naming), key=key) == slow


def test_the_scaler_reads_the_simulated_split_and_sleep_state() -> None:
    store = Store(retention=300.0, max_series=100_000)
    store.append(snapshot_samples([decode_pod().snapshot()]), 1.0)
    spec = parse_policy({"policy": "vllm", "deployment": "qwen-decode", "phase": "unified"}, "ns")
    pool = read_pool(store, spec.selector, 1.0, 60.0, 5.0, pool_metrics(spec))
    (pod,) = pool.pods.values()
    assert pod.waiting_by_reason and pod.waiting == 12 - DEMO.max_num_seqs and pod.waiting_deferred == 3.0
    assert not pod.asleep


def test_version_names_and_the_cli_switch() -> None:
    assert vm.MetricNaming(version="legacy").version == "0.10"
    with pytest.raises(ValueError, match="unknown vLLM version '0.7'"):
        vm.MetricNaming(version="0.7")
    parser = cli.pod_parser()
    assert cli._naming(parser.parse_args([])).version == "0.33"
    assert cli._naming(parser.parse_args(["--vllm-version", "legacy"])).version == "0.10"
    assert cli._naming(parser.parse_args(["--legacy-names"])).version == "0.6"
    with pytest.raises(SystemExit):
        parser.parse_args(["--vllm-version", "0.7"])


def test_rebucketing_keeps_every_observation() -> None:
    h = Histogram((1, 2, 3, 4))
    for v in (0.5, 1, 1.5, 2.5, 3.5, 9):
        h.observe(v)
    coarse = h.value().rebucketed((2, 4))
    assert coarse.counts == (3, 2, 1) and coarse.count == 6 and coarse.total == h.value().total
    with pytest.raises(ValueError, match="not a subset"):
        h.value().rebucketed((2.5,))
