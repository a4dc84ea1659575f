"""The inference gateway in front of a fleet: requests counted on arrival, and a flow-control queue.

It exports what llm-d's endpoint picker (EPP, llm-d/llm-d-router `pkg/epp/metrics`) does, so a
`demandQuery` can count demand that has not reached any pod yet:
`llm_d_epp_request_total` (a counter of requests received, labels model_name, target_model_name,
fairness_id, priority) and `llm_d_epp_flow_control_queue_size` (a gauge of requests held in the
flow-control queue, labels fairness_id, priority, inference_pool, model_name, target_model_name).
With flow control on, a request waits here while every ready pod of the entry pool is saturated, as
the EPP's utilization detector judges it (queue depth 5, KV cache 0.8), and goes out first come,
first served when one is not; one held longer than the request TTL (60 s) is shed with a 429, as
llm-d's flow controller sheds at `defaultRequestTTL` and `defaultNoEndpointRequestTTL`, both 60 s
(`pkg/epp/flowcontrol/controller/config.go`; FCFS is its default ordering policy,
`pkg/epp/flowcontrol/registry/config.go`). With it off, the queue stays at 0 and requests go
straight to a pod. Pure: the virtual fleet and the live router both drive it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from scaler.sim.otlp_push import PodMetrics

QUEUE_SIZE = "llm_d_epp_flow_control_queue_size"
REQUESTS = "llm_d_epp_request_total"  # stored (and queried) as llm_d_epp_request
FAIRNESS = {"fairness_id": "default", "priority": "0"}  # no x-gateway-inference-fairness-id header

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FlowControl:
    """When a pod is saturated (the EPP utilization detector's queueDepthThreshold and kvCacheUtilThreshold),
    and how long a request may be held before it is shed (the flow controller's request TTL; None: never)."""

    queue_depth: float = 5.0
    kv_cache: float = 0.8
    request_ttl: float | None = 60.0

    def saturated(self, waiting: int, kv_usage: Callable[[], float]) -> bool:
        """`kv_usage` is only asked when the queue alone does not decide."""
        return waiting >= self.queue_depth or kv_usage() >= self.kv_cache


def gateway_pod(inference_pool: str) -> str:
    return f"{inference_pool}-epp-0"


class Gateway(Generic[T]):
    """Arrivals and the flow-control queue of one InferencePool; `T` is whatever the driver queues."""

    def __init__(self, namespace: str, inference_pool: str, model: str, flow_control: FlowControl | None) -> None:
        self.namespace, self.inference_pool, self.model = namespace, inference_pool, model
        self.flow_control = flow_control
        self.received = 0
        self.queue: deque[T] = deque()

    def arrived(self) -> None:
        self.received += 1

    def shed_at(self, arrival: float) -> float | None:
        """When a request held since `arrival` is shed (its TTL runs out); None: never."""
        ttl = None if self.flow_control is None else self.flow_control.request_ttl
        return None if ttl is None else arrival + ttl

    def holds(self, open_pods: int) -> bool:
        """Whether a new request must wait: flow control is on, and requests wait already or none of the
        ready pods has room (`open_pods` of them do)."""
        return self.flow_control is not None and (bool(self.queue) or open_pods == 0)

    def metrics(self, created: float) -> PodMetrics:
        """What the EPP pod's collector pushes: the k8s resource, then the two series."""
        pod = gateway_pod(self.inference_pool)
        resource = {
            "service.name": "otel-collector",
            "service.instance.id": f"{pod}:9090",
            "k8s.pod.name": pod,
            "k8s.namespace.name": self.namespace,
            "k8s.deployment.name": f"{self.inference_pool}-epp",
        }
        models = {"model_name": self.model, "target_model_name": self.model}
        out = PodMetrics(resource, start_ns=int(created * 1e9))
        out.gauge(QUEUE_SIZE, float(len(self.queue)), {**FAIRNESS, "inference_pool": self.inference_pool, **models})
        out.counter(REQUESTS, float(self.received), {**models, **FAIRNESS})
        return out


def queue_query(namespace: str, inference_pool: str) -> str:
    """The metricQuery that sums the gateway's queue for one pool."""
    return f'sum({QUEUE_SIZE}{{namespace="{namespace}", inference_pool="{inference_pool}"}})'
