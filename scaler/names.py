"""Canonical metric names and the identity of a series' pod.

vLLM's names vary by version and by path (`vllm:` from the Prometheus receiver, `vllm.` from native
OTel; counters with or without `_total`; renamed gauges and histograms), and kedify's users write names
escaped (`.` and `/` as `_`, kedify's `metric/mem_store.go` `escapeName`). Ingest and queries both pass
through `canonical_name`, so every variant lands on, and is found under, one name.
"""

from __future__ import annotations

from collections.abc import Mapping

_RENAMED = {
    "vllm:gpu_cache_usage_perc": "vllm:kv_cache_usage_perc",
    "vllm:time_per_output_token_seconds": "vllm:inter_token_latency_seconds",
}

# Query labels that also match the OTel semantic-convention attribute, in order of preference.
LABEL_ALIASES: Mapping[str, tuple[str, ...]] = {
    "namespace": ("namespace", "k8s.namespace.name"),
    "deployment": ("deployment", "k8s.deployment.name"),
    "pod": ("pod", "k8s.pod.name"),
}

POD_KEYS = ("k8s.pod.name", "pod", "service.instance.id")
NAMESPACE_KEYS = LABEL_ALIASES["namespace"]


def escape_name(name: str) -> str:
    """kedify's escaping, applied when it stores and when it queries: `.` and `/` become `_`."""
    return name.replace(".", "_").replace("/", "_")


def canonical_name(name: str, histogram: bool = False) -> str:
    """Map a metric name to the one name all its variants share.

    Names are escaped as kedify escapes them; then `vllm_x` (from `vllm.x`, or written so) becomes
    `vllm:x`; a trailing `_total` goes (counters are found with or without it), except on a histogram,
    whose name is its own whatever it ends with (vLLM's `iteration_tokens_total` is one); the deprecated
    vLLM names map to their successors. `_created` series keep their own name, so a counter's
    creation-time gauge is never confused with the counter.
    """
    name = escape_name(name)
    if name.startswith("vllm_"):
        name = "vllm:" + name[5:]
    if not histogram and name.endswith("_total") and len(name) > 6:
        name = name[:-6]
    return _RENAMED.get(name, name)


def label_value(labels: Mapping[str, str], label: str) -> str:
    """The value of a query label, looking through its aliases; '' when absent (as in Prometheus)."""
    for key in LABEL_ALIASES.get(label, (label,)):
        value = labels.get(key)
        if value is not None:
            return value
    return ""


def pod_of(labels: Mapping[str, str]) -> str:
    """The series' pod as `namespace/pod`, from k8s.pod.name, else `pod`, else service.instance.id."""
    pod = next((labels[k] for k in POD_KEYS if labels.get(k)), "")
    namespace = next((labels[k] for k in NAMESPACE_KEYS if labels.get(k)), "")
    return f"{namespace}/{pod}" if pod else ""
