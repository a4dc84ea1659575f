"""Soak: the scaler under steady load for --duration; errors, RSS over time, GetMetrics latency.

The scaler runs as `python -m scaler serve` in its own process. A pusher process sends N pods x M
series over OTLP/gRPC every --interval, batched as a collector batches them (vLLM's gauges, counters
and latency histograms, plus filler gauges up to M). This process polls K ScaledObjects through the
KEDA ExternalScaler API as KEDA does on each evaluation (GetMetricSpec, GetMetrics, IsActive): half of
them query triggers, half `policy: vllm` triggers, each policy trigger also holding a StreamIsActive
stream open. The scaler's RSS is read from /proc, its series and samples from its /metrics.

    python load/soak.py --duration 600 --pods 200 --series 40 --scaledobjects 40 --out soak.json
    python load/soak.py --duration 60                      # what CI runs (tests/integration/test_soak.py)

When the load ends, the pushes stop and every ScaledObject is polled until it answers UNAVAILABLE (the
error that makes KEDA hold its fallback), never 0 before it. Timing is reported as figures, not judged:
start-up, late push ticks, GetMetrics p99 against 1 s, evaluations against their schedule, and how
long each error took after the last push against --stale-after plus one --interval.

Exit status 1 on any unexpected error (a failed or refused push, an error answer once data flows, an
error logged by the scaler, a stream that ends, a 0 or no error once the pushes stop) or when RSS
grows by more than --max-rss-growth after warm-up. Warm-up lasts until memory can be steady: each
series keeps --retention of rows plus up to 256 rows it has dropped but not yet compacted away, so
retention + 256 intervals (+15 s), at most half the run. A 60-second run ends before that and bounds
growth loosely; a 10-minute run reaches it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scaler_process import ScalerProcess

EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
CORE_SERIES = 8  # running, waiting, kv, three counters, two latency histograms
TTFT_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)
ITL_BOUNDS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
NAMESPACE = "soak"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load [60]")
    parser.add_argument("--pods", type=int, default=40, help="pods pushing [40]")
    parser.add_argument("--series", type=int, default=20, help=f"series per pod, at least {CORE_SERIES} [20]")
    parser.add_argument("--scaledobjects", type=int, default=10, help="ScaledObjects polled, half policy [10]")
    parser.add_argument("--interval", type=float, default=1.0, help="export interval, seconds [1]")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="KEDA evaluation interval, seconds [1]")
    parser.add_argument("--pods-per-request", type=int, default=50, help="pods a collector batches per export [50]")
    parser.add_argument("--retention", default="30s", help="the scaler's --retention [30s]")
    parser.add_argument("--stale-after", default="15s", help="the scaler's --stale-after [15s]")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples [5]")
    parser.add_argument(
        "--max-rss-growth", type=float, default=16.0, help="MiB RSS may grow after warm-up (or 10%%, if larger) [16]"
    )
    parser.add_argument("--out", help="write the figures as JSON to this file")
    args = parser.parse_args(argv)
    if args.series < CORE_SERIES:
        parser.error(f"--series must be at least {CORE_SERIES}")
    return args


# -- the pods: OTLP requests as a collector batches them ----------------------------------------------


def pod_request(pods: Sequence[int], deployments: int, series: int, t: float, start_ns: int) -> bytes:
    """One export of these pods' series at `t` seconds into the run: values move, counters grow."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.metrics.v1.metrics_pb2 import (
        Gauge,
        Histogram,
        HistogramDataPoint,
        Metric,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    def kvs(attributes: dict[str, str]) -> list[KeyValue]:
        return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attributes.items()]

    now_ns = start_ns + int(t * 1e9)
    out = ExportMetricsServiceRequest()
    for index in pods:
        deployment = f"model-{index % deployments}"
        pod = f"{deployment}-{index:05d}"
        labels = kvs({"namespace": NAMESPACE, "deployment": deployment, "pod": pod, "engine": "0"})
        phase = t / 60 + index
        gauges = {
            "vllm:num_requests_running": 12 + 8 * math.sin(phase),
            "vllm:num_requests_waiting": max(0.0, 4 * math.sin(phase / 2)),
            "vllm:kv_cache_usage_perc": 0.55 + 0.35 * math.sin(phase),
        }
        counters = {
            "vllm:prompt_tokens_total": 3000.0 * t,
            "vllm:generation_tokens_total": 900.0 * t,
            "vllm:num_preemptions_total": float(int(t // 30)),
        }
        metrics = [
            Metric(
                name=n,
                gauge=Gauge(data_points=[NumberDataPoint(attributes=labels, as_double=v, time_unix_nano=now_ns)]),
            )
            for n, v in gauges.items()
        ]
        metrics += [
            Metric(
                name=n,
                sum=Sum(
                    data_points=[
                        NumberDataPoint(
                            attributes=labels, as_double=v, start_time_unix_nano=start_ns, time_unix_nano=now_ns
                        )
                    ],
                    aggregation_temporality=2,
                    is_monotonic=True,
                ),
            )
            for n, v in counters.items()
        ]
        requests = int(4 * t)
        for name, bounds, typical in (
            ("vllm:time_to_first_token_seconds", TTFT_BOUNDS, 4),
            ("vllm:inter_token_latency_seconds", ITL_BOUNDS, 2),
        ):
            counts = [0] * (len(bounds) + 1)
            counts[typical] = requests - requests // 10
            counts[typical + 2] = requests // 10
            point = HistogramDataPoint(
                attributes=labels,
                start_time_unix_nano=start_ns,
                time_unix_nano=now_ns,
                count=requests,
                sum=requests * bounds[typical],
                bucket_counts=counts,
                explicit_bounds=bounds,
            )
            metrics.append(Metric(name=name, histogram=Histogram(data_points=[point], aggregation_temporality=2)))
        filler = [
            NumberDataPoint(
                attributes=labels + kvs({"slot": str(j)}), as_double=j + math.sin(phase), time_unix_nano=now_ns
            )
            for j in range(series - CORE_SERIES)
        ]
        if filler:
            metrics.append(Metric(name="soak_filler", gauge=Gauge(data_points=filler)))
        resource = Resource(
            attributes=kvs({"k8s.pod.name": pod, "k8s.namespace.name": NAMESPACE, "k8s.deployment.name": deployment})
        )
        out.resource_metrics.append(ResourceMetrics(resource=resource, scope_metrics=[ScopeMetrics(metrics=metrics)]))
    return out.SerializeToString()


@dataclass
class PushTally:
    ticks: int = 0
    late_ticks: int = 0
    requests: int = 0
    datapoints: int = 0
    rejected: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    slowest_tick: float = 0.0
    last_push_at: float = 0.0  # time.monotonic() (system-wide) when the last accepted export returned


def push_loop(address: str, args: argparse.Namespace, stop: Any, results: Any) -> None:
    """The pusher process: every interval, every pod's series, in batches; report a PushTally at the end."""
    import grpc
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

    deployments = max(1, args.scaledobjects // 2)
    tally = PushTally()
    errors: Counter[str] = Counter()
    batches = [range(i, min(i + args.pods_per_request, args.pods)) for i in range(0, args.pods, args.pods_per_request)]
    start_ns = time.time_ns()
    started = time.monotonic()
    with grpc.insecure_channel(address) as channel:
        export = channel.unary_unary(EXPORT)
        while not stop.is_set():
            due = started + tally.ticks * args.interval
            t = due - started
            for batch in batches:
                try:
                    raw = export(pod_request(batch, deployments, args.series, t, start_ns), timeout=10)
                except grpc.RpcError as exc:
                    errors[f"push {exc.code().name}"] += 1  # type: ignore[attr-defined]
                    continue
                tally.requests += 1
                tally.datapoints += len(batch) * args.series
                tally.last_push_at = time.monotonic()
                rejected = ExportMetricsServiceResponse.FromString(raw).partial_success.rejected_data_points
                if rejected:
                    tally.rejected += rejected
                    errors["push partially refused"] += 1
            tally.ticks += 1
            spent = time.monotonic() - due
            tally.slowest_tick = max(tally.slowest_tick, spent)
            if spent > args.interval:
                tally.late_ticks += 1
            stop.wait(max(0.0, started + tally.ticks * args.interval - time.monotonic()))
    tally.errors = dict(errors)
    results.put(asdict(tally))


def metric_sum(page: str, name: str) -> float:
    """The sum of a metric's samples over all label sets on a Prometheus text page."""
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", page, re.MULTILINE))


# -- KEDA's side --------------------------------------------------------------------------------------


def scaled_objects(count: int) -> list[tuple[str, dict[str, str]]]:
    """(kind, metadata): even ones query triggers, odd ones policy triggers, two per deployment."""
    deployments = max(1, count // 2)
    queries = [
        ("sum(vllm:num_requests_running{{{sel}}})", "last_one"),
        ("avg(vllm:num_requests_running{{{sel}}})", "avg"),
        ("sum(vllm:generation_tokens{{{sel}}})", "rate"),
        ("max(vllm:kv_cache_usage_perc{{{sel}}})", "max"),
    ]
    out = []
    for k in range(count):
        deployment = f"model-{(k // 2) % deployments}"
        selector = f'namespace="{NAMESPACE}", deployment="{deployment}"'
        if k % 2 == 0:
            query, operation = queries[(k // 2) % len(queries)]
            metadata = {"metricQuery": query.format(sel=selector), "targetValue": "4", "operationOverTime": operation}
            if operation in ("rate", "avg"):
                metadata["window"] = "30s"
            out.append(("query", metadata))
        else:
            phase = ("decode", "prefill", "unified")[(k // 2) % 3]
            metadata = {
                "policy": "vllm",
                "deployment": deployment,
                "phase": phase,
                "targetRunningPerPod": "16",
                "ttftSeconds": "0.5",
                "itlSeconds": "0.05",
                "prefillTokensPerSecondPerPod": "5000",
                "decodeTokensPerSecondPerPod": "1500",
            }
            out.append(("policy", metadata))
    return out


@dataclass
class KedaTally:
    attempts: int = 0  # evaluations begun; each ends as one of `evaluations` or one error
    evaluations: int = 0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"query": [], "policy": []})
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)
    stream_messages: int = 0

    def error(self, kind: str, details: str) -> None:
        self.errors[kind] += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(f"{kind}: {details[:200]}")


async def evaluate_loop(
    address: str, objects: list[tuple[str, dict[str, str]]], interval: float, until: float, tally: KedaTally
) -> None:
    """Every interval, each ScaledObject evaluated as KEDA does it; policy ones also hold a stream open."""
    import grpc

    from scaler.externalscaler import externalscaler_pb2 as pb
    from scaler.externalscaler import externalscaler_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        refs = [
            (kind, pb.ScaledObjectRef(name=f"so-{k}", namespace=NAMESPACE, scalerMetadata=metadata))
            for k, (kind, metadata) in enumerate(objects)
        ]

        async def stream(ref: Any) -> None:
            call = stub.StreamIsActive(ref)
            try:
                async for _ in call:
                    tally.stream_messages += 1
                tally.error("stream ended", "StreamIsActive ended before the soak did")
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    tally.error(f"StreamIsActive {exc.code().name}", exc.details() or "")

        async def evaluate(kind: str, ref: Any, offset: float) -> None:
            await asyncio.sleep(offset)
            while time.monotonic() < until:
                started = time.monotonic()
                tally.attempts += 1
                method = "GetMetricSpec"
                try:
                    spec = (await stub.GetMetricSpec(ref, timeout=10)).metricSpecs[0]
                    method = "GetMetrics"
                    asked = time.monotonic()
                    request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricName)
                    await stub.GetMetrics(request, timeout=10)
                    tally.latencies[kind].append(time.monotonic() - asked)
                    method = "IsActive"
                    await stub.IsActive(ref, timeout=10)
                    tally.evaluations += 1
                except grpc.aio.AioRpcError as exc:
                    tally.error(f"{method} {exc.code().name}", exc.details() or "")
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

        streams = [asyncio.create_task(stream(ref)) for kind, ref in refs if kind == "policy"]
        count = len(refs)
        await asyncio.gather(*(evaluate(kind, ref, interval * k / count) for k, (kind, ref) in enumerate(refs)))
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)


async def until_answered(address: str, objects: list[tuple[str, dict[str, str]]], give_up: float) -> list[str]:
    """Before the soak proper: poll every ScaledObject until it answers, the scaler's --warmup over; return
    those that never did (warm-up is all or nothing: every trigger answers UNAVAILABLE until it ends)."""
    import grpc

    from scaler.externalscaler import externalscaler_pb2 as pb
    from scaler.externalscaler import externalscaler_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]

        async def answered(name: str, metadata: dict[str, str]) -> bool:
            ref = pb.ScaledObjectRef(name=name, namespace=NAMESPACE, scalerMetadata=metadata)
            deadline = time.monotonic() + give_up
            while time.monotonic() < deadline:
                try:
                    spec = (await stub.GetMetricSpec(ref, timeout=10)).metricSpecs[0]
                    await stub.GetMetrics(
                        pb.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricName), timeout=10
                    )
                    return True
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        return False
                await asyncio.sleep(0.2)
            return False

        names = [f"so-{k}" for k in range(len(objects))]
        done = await asyncio.gather(*(answered(n, metadata) for n, (_, metadata) in zip(names, objects, strict=True)))
    return [n for n, ok in zip(names, done, strict=True) if not ok]


async def until_unavailable(
    address: str, objects: list[tuple[str, dict[str, str]]], last_push_at: float, give_up: float
) -> dict[str, Any]:
    """The pushes have stopped: poll every ScaledObject until it answers an error, noting a 0 before it."""
    import grpc

    from scaler.externalscaler import externalscaler_pb2 as pb
    from scaler.externalscaler import externalscaler_pb2_grpc as pb_grpc

    delays: dict[str, float] = {}  # ScaledObject -> its first UNAVAILABLE, seconds after the last push
    wrong: dict[str, str] = {}  # ScaledObject -> another error code it answered first
    zero_first: set[str] = set()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]

        async def poll(name: str, metadata: dict[str, str]) -> None:
            ref = pb.ScaledObjectRef(name=name, namespace=NAMESPACE, scalerMetadata=metadata)
            deadline = time.monotonic() + give_up
            while time.monotonic() < deadline:
                try:
                    spec = (await stub.GetMetricSpec(ref, timeout=10)).metricSpecs[0]
                    request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricName)
                    answer = (await stub.GetMetrics(request, timeout=10)).metricValues[0]
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        delays[name] = time.monotonic() - last_push_at
                    else:
                        wrong[name] = exc.code().name
                    return
                if (answer.metricValueFloat if answer.metricValueFloat > 0 else answer.metricValue) == 0:
                    zero_first.add(name)  # as KEDA reads it: the float when > 0, else the int
                await asyncio.sleep(0.1)

        await asyncio.gather(*(poll(f"so-{k}", metadata) for k, (_, metadata) in enumerate(objects)))
    never = sorted(f"so-{k}" for k in range(len(objects)) if f"so-{k}" not in delays and f"so-{k}" not in wrong)
    return {"delays": delays, "other_codes": wrong, "zero_first": sorted(zero_first), "no_error": never}


# -- the run --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def sample_loop(
    scaler: ScalerProcess, started: float, until: float, every: float, out: list[dict[str, float]]
) -> None:
    while True:
        page = await asyncio.to_thread(scaler.self_metrics)
        out.append(
            {
                "t": round(time.monotonic() - started, 1),
                "rss_mib": round(scaler.rss_mib(), 1),
                "series": metric_sum(page, "keda_llm_scaler_series"),
                "samples": metric_sum(page, "keda_llm_scaler_samples"),
            }
        )
        if time.monotonic() >= until:
            return
        await asyncio.sleep(min(every, max(0.0, until - time.monotonic())))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from scaler.durations import parse_duration

    retention = parse_duration(args.retention)
    stale_after = parse_duration(args.stale_after)
    # buffers fill for one retention, compact once an eighth of a long one is dead, and the sweep (every
    # quarter retention) packs them: steady after about 1.5 retentions
    warm_up = min(args.duration / 2, 1.5 * retention + 15.0)
    flags = ["--retention", args.retention, "--stale-after", args.stale_after, "--warmup", "5s"]
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    objects = scaled_objects(args.scaledobjects)
    keda = KedaTally()
    samples: list[dict[str, float]] = []
    with ScalerProcess(*flags) as scaler:
        pusher = context.Process(target=push_loop, args=(scaler.address("otlp-grpc"), args, stop, results))
        started = time.monotonic()
        pusher.start()
        until = started + args.duration
        sampling = asyncio.create_task(sample_loop(scaler, started, until, args.sample_every, samples))
        await asyncio.sleep(3 * args.interval + 0.5)  # rate and policy triggers need a few samples first
        silent = await until_answered(scaler.address("scaler"), objects, give_up=60.0)
        scheduled = len(objects) * max(1, math.floor((until - time.monotonic()) / args.poll_interval))
        await evaluate_loop(scaler.address("scaler"), objects, args.poll_interval, until, keda)
        await sampling
        stop.set()
        pushed = results.get(timeout=60)
        pusher.join(timeout=30)
        give_up = stale_after + 2 * args.interval + 30.0
        stale = await until_unavailable(scaler.address("scaler"), objects, pushed["last_push_at"], give_up)
        page = scaler.self_metrics()
        returncode = scaler.stop()
        logged_errors = scaler.logged_errors()
    accepted = metric_sum(page, "keda_llm_scaler_datapoints_accepted_total")
    errors = Counter(keda.errors) + Counter(pushed["errors"])
    if logged_errors:
        errors["scaler logged an error"] += len(logged_errors)
    if returncode != 0:
        errors[f"scaler exited {returncode}"] += 1
    if accepted != pushed["datapoints"] - pushed["rejected"]:
        errors["accepted datapoints differ from those pushed"] += 1
    if silent:
        errors["never answered after warm-up"] += len(silent)
    for kind, names in (("answered 0", stale["zero_first"]), ("never answered an error", stale["no_error"])):
        if names:
            errors[f"once the pushes stopped, {kind}"] += len(names)
    for code in stale["other_codes"].values():
        errors[f"once the pushes stopped, answered {code} before UNAVAILABLE"] += 1
    delays = sorted(stale["delays"].values())
    at_warm = next((s for s in samples if s["t"] >= warm_up), samples[-1])
    after = [s["rss_mib"] for s in samples if s["t"] >= at_warm["t"]]
    growth = max(after) - at_warm["rss_mib"]
    bound = max(args.max_rss_growth, 0.1 * at_warm["rss_mib"])
    every = [t for ts in keda.latencies.values() for t in ts]
    latency = {
        kind: {f"p{int(q * 100)}": round(percentile(ts, q) * 1000, 2) for q in (0.5, 0.95, 0.99)} | {"n": len(ts)}
        for kind, ts in (*keda.latencies.items(), ("all", every))
    }
    return {
        "config": {k: v for k, v in vars(args).items() if k != "out"} | {"warm_up_seconds": warm_up},
        "startup_seconds": round(scaler.startup_seconds, 2),
        "datapoints_pushed": pushed["datapoints"],
        "datapoints_accepted": accepted,
        "datapoints_per_second": round(args.pods * args.series / args.interval),
        "pushes": pushed,
        "evaluations_begun": keda.attempts,
        "evaluations": keda.evaluations,
        "evaluations_scheduled": scheduled,
        "stream_messages": keda.stream_messages,
        "errors": dict(errors),
        "first_errors": keda.first_errors + logged_errors[:5],
        "getmetrics_latency_ms": latency,
        "rss_mib": {
            "start": samples[0]["rss_mib"],
            "at_warm_up": at_warm["rss_mib"],
            "peak": max(s["rss_mib"] for s in samples),
            "end": samples[-1]["rss_mib"],
            "growth_after_warm_up": round(growth, 1),
            "bound": round(bound, 1),
        },
        "samples": samples,
        "once_pushes_stop": stale
        | {
            "bound_seconds": stale_after + args.interval,
            "p50_seconds": round(percentile(delays, 0.5), 2),
            "max_seconds": round(max(delays, default=math.nan), 2),
        },
        "passed": not errors and growth <= bound,
    }


def report(figures: dict[str, Any]) -> str:
    config, rss, latency = figures["config"], figures["rss_mib"], figures["getmetrics_latency_ms"]
    pushes, stale = figures["pushes"], figures["once_pushes_stop"]
    kinds = Counter(kind for kind, _ in scaled_objects(config["scaledobjects"]))
    p99 = latency["all"]["p99"]
    kept_up = figures["evaluations"] / max(1, figures["evaluations_scheduled"])
    lines = [
        f"soak: {config['duration']:g}s, {config['pods']} pods x {config['series']} series every "
        f"{config['interval']:g}s ({figures['datapoints_per_second']:,} datapoints/s), {config['scaledobjects']} "
        f"ScaledObjects ({kinds['query']} query, {kinds['policy']} policy with a stream each) evaluated every "
        f"{config['poll_interval']:g}s",
        f"datapoints pushed {figures['datapoints_pushed']:,}, accepted {figures['datapoints_accepted']:,.0f}; "
        f"{figures['pushes']['ticks']} ticks ({figures['pushes']['late_ticks']} late, slowest "
        f"{figures['pushes']['slowest_tick']:.2f}s); {figures['evaluations']:,} evaluations; "
        f"{figures['stream_messages']} stream messages",
        "errors: " + (", ".join(f"{kind} {n}" for kind, n in sorted(figures["errors"].items())) or "none"),
        *(f"  {line}" for line in figures["first_errors"]),
        "GetMetrics latency ms: "
        + "; ".join(f"{kind} p50 {v['p50']} p95 {v['p95']} p99 {v['p99']} (n={v['n']})" for kind, v in latency.items()),
        f"timing: start-up {figures['startup_seconds']:.2f}s; late ticks {pushes['late_ticks']} of "
        f"{pushes['ticks']} ({pushes['late_ticks'] / max(1, pushes['ticks']):.1%}), slowest "
        f"{pushes['slowest_tick'] / config['interval']:.2f}x the interval; GetMetrics p99 {p99} ms = "
        f"{p99 / 1000:.1%} of 1 s; evaluations {figures['evaluations']:,} answered of "
        f"{figures['evaluations_begun']:,} begun = {kept_up:.2f}x the {figures['evaluations_scheduled']:,} scheduled",
        f"once the pushes stop: {len(stale['delays'])} of {config['scaledobjects']} ScaledObjects answered "
        f"UNAVAILABLE, p50 {stale['p50_seconds']}s, max {stale['max_seconds']}s after the last push = "
        f"{stale['max_seconds'] / stale['bound_seconds']:.2f}x --stale-after + --interval "
        f"({stale['bound_seconds']:g}s); answered 0 first: {', '.join(stale['zero_first']) or 'none'}",
        f"RSS MiB: start {rss['start']}, at warm-up ({config['warm_up_seconds']:g}s) {rss['at_warm_up']}, "
        f"peak {rss['peak']}, end {rss['end']}; growth after warm-up {rss['growth_after_warm_up']:+} "
        f"(bound {rss['bound']})",
        "     t s   RSS MiB    series    samples",
    ]
    samples = figures["samples"]
    step = max(1, len(samples) // 12)
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    lines += [f"  {s['t']:7.1f}  {s['rss_mib']:8.1f}  {s['series']:8.0f}  {s['samples']:9.0f}" for s in shown]
    lines.append("SOAK " + ("PASSED" if figures["passed"] else "FAILED"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    figures = asyncio.run(run(args))
    print(report(figures), flush=True)
    if args.out:
        with open(args.out, "w") as out:
            json.dump(figures, out, indent=2)
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
