"""Query benchmark: GetMetrics latency (p50, p99) for query and policy triggers, against an empty gRPC call.

For each fleet size a fresh scaler (`python -m scaler serve`, its own process) receives a few pushes
of every pod (load/otlp_payloads.py, 40 series per pod) and then a quiet client calls, one at a time
and interleaved: the gRPC health check (an empty unary call to the same server; the baseline is its
latency before any push, since a loaded store slows it too),
GetMetrics for two kedify-style query triggers (KServe's `sum(...)` of a gauge; a counter's `rate`),
and GetMetrics for a `policy: vllm` trigger. Every trigger selects the whole fleet. Windows are set
to cover every push, so each series contributes all its rows, as it would in steady state.

    python load/bench_query.py                       # 10, 1,000 and 5,000 pods (a few minutes)
    python load/bench_query.py --smoke               # a few seconds
    python load/bench_query.py --profile /tmp/prof   # also py-spy each trigger at the largest size
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from bench_ingest import EXPORT_METHOD, MAX_MESSAGE, Profiler
from grpc_health.v1 import health_pb2
from otlp_payloads import SERIES_PER_POD, Batches, fleet
from scaler_process import ScalerProcess

from scaler.externalscaler import externalscaler_pb2 as keda

TARGET_RATIO = 2.0
NAMESPACE, DEPLOYMENT = "llm", "llama"
SELECTOR = f'namespace="{NAMESPACE}", deployment="{DEPLOYMENT}"'
TRIGGERS = {
    "query last_one": {"metricQuery": f"sum(vllm:num_requests_running{{{SELECTOR}}})", "targetValue": "4.000000"},
    "query rate": {
        "metricQuery": f"sum(vllm:generation_tokens_total{{{SELECTOR}}})",
        "operationOverTime": "rate",
        "targetValue": "1000",
    },
    "policy unified": {
        "policy": "vllm",
        "namespace": NAMESPACE,
        "deployment": DEPLOYMENT,
        "phase": "unified",
        "ttftSeconds": "0.5",
        "itlSeconds": "0.05",
        "stableWindow": "10m",  # cover every push: a quiet store stands in for one in steady state
        "panicWindow": "5m",
    },
}
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
IDLE = "empty call, before any push"
EMPTY = "empty call (health Check)"


@dataclass
class Latencies:
    seconds: list[float] = field(default_factory=list)
    errors: int = 0
    error: str = ""
    value: float | None = None

    def quantile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


@dataclass
class SizeResult:
    pods: int
    calls: dict[str, Latencies]
    profiles: dict[str, str] = field(default_factory=dict)


class Caller:
    """Pre-serialized unary calls on one channel, timed one at a time."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.calls: dict[str, tuple[grpc.UnaryUnaryMultiCallable, bytes]] = {
            EMPTY: (
                channel.unary_unary(HEALTH_CHECK),
                health_pb2.HealthCheckRequest().SerializeToString(),
            )
        }
        spec = channel.unary_unary("/externalscaler.ExternalScaler/GetMetricSpec")
        metrics = channel.unary_unary("/externalscaler.ExternalScaler/GetMetrics")
        for name, metadata in TRIGGERS.items():
            ref = keda.ScaledObjectRef(name=DEPLOYMENT, namespace=NAMESPACE, scalerMetadata=metadata)
            reply = keda.GetMetricSpecResponse.FromString(spec(ref.SerializeToString(), timeout=60))
            request = keda.GetMetricsRequest(scaledObjectRef=ref, metricName=reply.metricSpecs[0].metricName)
            self.calls[name] = (metrics, request.SerializeToString())

    def once(self, name: str, into: Latencies) -> None:
        call, body = self.calls[name]
        started = time.perf_counter()
        try:
            reply = call(body, timeout=120)
        except grpc.RpcError as exc:
            into.errors += 1
            into.error = into.error or f"{exc.code().name}: {exc.details()}"[:160]
            return
        into.seconds.append(time.perf_counter() - started)
        if name in TRIGGERS:
            into.value = keda.GetMetricsResponse.FromString(reply).metricValues[0].metricValueFloat


def measure_size(pods: int, args: argparse.Namespace, profile: bool) -> SizeResult:
    flags = ["--retention", "10m", "--stale-after", "10m", "--warmup", "0s", "--max-series", str(pods * 100)]
    with ScalerProcess(*flags) as scaler:
        idle = Latencies()  # the baseline: the empty call before the store holds anything
        with grpc.insecure_channel(scaler.address("scaler")) as channel:
            check = channel.unary_unary(HEALTH_CHECK)
            for _ in range(args.calls + 1):
                started = time.perf_counter()
                check(b"", timeout=60)
                idle.seconds.append(time.perf_counter() - started)
            del idle.seconds[0]
        options = [("grpc.max_send_message_length", MAX_MESSAGE)]
        with grpc.insecure_channel(scaler.address("otlp-grpc"), options=options) as otlp:
            export = otlp.unary_unary(EXPORT_METHOD)
            for tick in range(1, args.pushes + 1):
                started = time.monotonic()
                for body in Batches(fleet(pods, NAMESPACE, DEPLOYMENT), tick=tick).requests(100):
                    export(body, timeout=300)
                time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))  # rates need time between rows
        with grpc.insecure_channel(scaler.address("scaler")) as channel:
            caller = Caller(channel)
            result = SizeResult(pods, {IDLE: idle} | {name: Latencies() for name in caller.calls})
            for name in caller.calls:  # warm: parse caches, first-call paths
                caller.once(name, Latencies())
            deadline = time.monotonic() + args.budget
            for _ in range(args.calls):
                started = time.monotonic()
                for name in caller.calls:
                    caller.once(name, result.calls[name])
                if time.monotonic() > deadline:
                    break
                time.sleep(max(0.0, args.spacing - (time.monotonic() - started)))
            if profile:
                for name in caller.calls:
                    profiler = Profiler(
                        scaler.pid, args.profile_seconds, args.profile / f"query-{pods}-{_slug(name)}.txt"
                    )
                    stop = time.monotonic() + args.profile_seconds
                    while time.monotonic() < stop:
                        caller.once(name, Latencies())
                    result.profiles[name] = profiler.finish()
    return result


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.split(" (")[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=lambda s: [int(p) for p in s.split(",")], default=[10, 1000, 5000])
    parser.add_argument("--pushes", type=int, default=5, help="pushes of every pod before the calls [5]")
    parser.add_argument("--calls", type=int, default=100, help="calls of each kind per size, at most [100]")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds of calls per size, at most [150]")
    parser.add_argument(
        "--spacing",
        type=float,
        default=0.6,
        help="seconds from one round of calls to the next [0.6]: longer than the scaler reuses a policy "
        "decision (0.5 s), as KEDA's polling (30 s) is, so that every call computes",
    )
    parser.add_argument("--profile", type=Path, help="py-spy the scaler per call kind at the largest size")
    parser.add_argument("--profile-seconds", type=float, default=15.0)
    parser.add_argument("--smoke", action="store_true", help="10 and 100 pods, a few calls")
    args = parser.parse_args()
    if args.smoke:
        args.pods, args.pushes, args.calls, args.budget, args.spacing = [10, 100], 2, 20, 5.0, 0.0
    results = [measure_size(p, args, bool(args.profile) and p == max(args.pods)) for p in args.pods]

    print(
        f"query: GetMetrics, one call at a time; {SERIES_PER_POD} series per pod, {args.pushes} pushes each; "
        f"every trigger selects the whole fleet; the baseline is the same server's gRPC health Check before any push"
    )
    header = (
        f"{'pods':>6} {'call':<28} {'n':>4} {'err':>3} {'p50 ms':>9} {'p99 ms':>9} {'p50 x':>8} {'p99 x':>8}  value"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        empty = result.calls[IDLE]
        for name, lat in result.calls.items():
            value = "" if lat.value is None else f"{lat.value:,.2f}"
            print(
                f"{result.pods:>6} {name:<28} {len(lat.seconds):>4} {lat.errors:>3} {lat.quantile(0.5) * 1e3:>9.2f} "
                f"{lat.quantile(0.99) * 1e3:>9.2f} {lat.quantile(0.5) / empty.quantile(0.5):>7.1f}x "
                f"{lat.quantile(0.99) / empty.quantile(0.99):>7.1f}x  {value}"
            )
            if lat.error:
                print(f"       first error: {lat.error}")
        for name, text in result.profiles.items():
            print(f"  profile at {result.pods:,} pods, {name} (calls back to back):\n{text}")
    print(
        f"x: against the empty call before any push, on the same server. Rounds of calls start {args.spacing:g} s "
        "apart; the empty call is also timed among them."
    )
    largest = results[-1]
    empty = largest.calls[IDLE]
    ratios = {
        name: lat.quantile(0.99) / empty.quantile(0.99) for name, lat in largest.calls.items() if name in TRIGGERS
    }
    met = all(r <= TARGET_RATIO for r in ratios.values()) and not any(lat.errors for lat in largest.calls.values())
    parts = ", ".join(
        f"{name} {largest.calls[name].quantile(0.99) * 1e3:,.1f} ms = {ratio:,.1f}x" for name, ratio in ratios.items()
    )
    among = largest.calls[EMPTY].quantile(0.99) * 1e3
    print(
        f"SUMMARY query: p99 at {largest.pods:,} pods: {parts} the empty call ({empty.quantile(0.99) * 1e3:.2f} ms; "
        f"{among:,.1f} ms among the others); target <= {TARGET_RATIO:g}x: {'MET' if met else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
