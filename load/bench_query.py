"""Query benchmark: GetMetrics latency (p50, p99) for query and policy triggers, against an empty gRPC call.

For each fleet size a fresh scaler (`python -m scaler serve`, its own process) receives a few pushes
of every pod (load/otlp_payloads.py, 40 series per pod) and then a quiet client calls, one at a time
and interleaved: the gRPC health check (an empty unary call to the same server; the baseline is its
latency before any push, since a loaded store slows it too),
GetMetrics for two kedify-style query triggers (KServe's `sum(...)` of a gauge; a counter's `rate`),
and GetMetrics for a `policy: vllm` trigger. Every trigger selects the whole fleet. Windows are set
to cover every push, so each series contributes all its rows, as it would in steady state.

Three lines come from the core in this process, in virtual time: the longest slice of
`Store.sweep_slices` at 10,000 pods (400,000 series), live and all expired, which is how long a sweep
holds the event loop; a policy trigger read (`read_pools` + `recommend`) at 5,000 pods while the
fleet keeps pushing in step (a push every 5 s, 100 pods a request, windows 60 s / 6 s), with the
longest push (`Store.append` of one request) beside it: what ingest pays to keep the pool views; and
a policy trigger's evaluation on a quiet store like the servers' above (`Triggers.evaluate`, and its
`read_pools` and `recommend` apart), with its top functions under cProfile: what a computing call
costs in Python, without gRPC. The timed tables also list each call's five slowest.

    python load/bench_query.py                       # 10, 1,000 and 5,000 pods (a few minutes)
    python load/bench_query.py --smoke               # a few seconds
    python load/bench_query.py --profile /tmp/prof   # also py-spy each trigger at the largest size
    python load/bench_query.py --core-only           # only the two in-process lines
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from bench_ingest import EXPORT_METHOD, MAX_MESSAGE, Profiler, core_decoder
from grpc_health.v1 import health_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from otlp_payloads import SERIES_PER_POD, Batches, fleet
from scaler_process import ScalerProcess

from scaler.app import POOL_UPKEEP
from scaler.externalscaler import externalscaler_pb2 as keda
from scaler.otlp import Sample
from scaler.policy import PolicyState, pool_metrics, recommend
from scaler.policy_spec import PolicySpec
from scaler.signals import read_pools
from scaler.store import Store
from scaler.triggers import Triggers, parse_trigger

TARGET_RATIO = 2.0  # query triggers, at the largest size
POLICY_TARGETS = {1000: 2.0, 5000: 5.0}  # policy trigger p99 against the empty call, by fleet size
SWEEP_TARGET_MS = 20.0
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
SHORT = {IDLE: "empty before", EMPTY: "empty among"}


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


def _decoded(pods: int, ticks: int, per_request: int = 100) -> list[list[list[Sample]]]:
    """Each tick's requests, decoded once (the decoder is not what these lines measure)."""
    decode, parse = core_decoder(), ExportMetricsServiceRequest.FromString
    bodies = [Batches(fleet(pods), tick).requests(per_request) for tick in range(1, ticks + 1)]
    return [[decode(parse(body)).samples for body in tick] for tick in bodies]


def sweep_stall(pods: int) -> str:
    """The longest sweep slice over pods x 40 series: live (each series trimmed, none freed), then all expired."""
    store = Store(retention=120.0, max_series=10**9)
    for tick, requests in enumerate(_decoded(pods, 2), start=1):
        for samples in requests:
            store.append(samples, float(tick))
    figures = []
    for now in (60.0, 1000.0):  # nothing is older than the retention yet; then everything is
        slices, started = [], time.perf_counter()
        last = started
        for _ in store.sweep_slices(now):
            slices.append(time.perf_counter() - last)
            last = time.perf_counter()
        figures.append((max(slices) * 1e3, (last - started) * 1e3, len(slices)))
    (live, live_all, n), (gone, gone_all, _) = figures
    met = max(live, gone) <= SWEEP_TARGET_MS
    return (
        f"SUMMARY sweep: {pods * SERIES_PER_POD:,} series in {n} slices: longest slice {live:.1f} ms live "
        f"(whole pass {live_all:.0f} ms), {gone:.1f} ms all expired (whole pass {gone_all:.0f} ms); "
        f"target <= {SWEEP_TARGET_MS:g} ms: {'MET' if met else 'NOT MET'}"
    )


def steady_reads(pods: int, seconds: float, reads: int) -> str:
    """Policy reads while the fleet pushes in step every 5 s, 100 pods a request, a request every 20 ms;
    then the same pushes into a store with no pool view, for what keeping one costs a push."""
    metadata = dict(TRIGGERS["policy unified"], stableWindow="60s", panicWindow="6s")
    spec = parse_trigger(metadata, NAMESPACE)
    assert isinstance(spec, PolicySpec)
    windows, names = (spec.stable_window, spec.panic_window), pool_metrics(spec)
    ticks = _decoded(pods, 2)
    rng = random.Random(1)
    moments = sorted(rng.uniform(70.0, 70.0 + seconds) for _ in range(reads))
    latencies: list[float] = []

    def read(store: Store, at: float) -> None:
        started = time.perf_counter()
        stable, panic = read_pools(store, spec.selector, at, windows, 5.0, names)
        recommend(spec, PolicyState(), stable, panic, at)
        latencies.append(time.perf_counter() - started)

    viewed = Store(retention=120.0, max_series=10**9)
    read_pools(viewed, spec.selector, 0.0, windows, 5.0, names)  # the view exists before the first push
    appends = _push_in_step(viewed, ticks, list(moments), read)
    plain = _push_in_step(Store(retention=120.0, max_series=10**9), ticks, list(moments), None)
    latencies.sort()
    without = latencies[:]
    latencies.clear()
    kept = Store(retention=120.0, max_series=10**9)  # again, with the server's upkeep between calls
    read_pools(kept, spec.selector, 0.0, windows, 5.0, names)
    slices: list[float] = []
    _push_in_step(kept, ticks, list(moments), read, slices)
    latencies.sort()

    def q(values: list[float], at: float) -> float:
        return values[min(len(values) - 1, math.ceil(at * len(values)) - 1)] * 1e3

    return (
        f"SUMMARY steady policy reads: {pods:,} pods pushing in step every 5 s (windows 60 s/6 s), "
        f"{len(latencies)} reads: read_pools + recommend p50 {q(latencies, 0.5):.1f} ms, "
        f"p99 {q(latencies, 0.99):.1f} ms, max {latencies[-1] * 1e3:.1f} ms with the pool upkeep every "
        f"{POOL_UPKEEP:g} s (its longest slice {max(slices, default=0.0) * 1e3:.1f} ms); without it p50 "
        f"{q(without, 0.5):.1f} ms, p99 {q(without, 0.99):.1f} ms, max {without[-1] * 1e3:.1f} ms; "
        f"one push of 100 pods p50 {q(appends, 0.5):.1f} ms (without the view {q(plain, 0.5):.1f} ms), "
        f"max {appends[-1] * 1e3:.1f} ms"
    )


def policy_evaluation(pods: int, calls: int = 200) -> str:
    """A policy trigger evaluated on a quiet store, as the servers above hold it (5 pushes, windows that
    cover them), a call every 0.6 s of virtual time: p50 of the whole evaluation and of its two parts,
    then the same calls under cProfile, by self time."""
    store = Store(retention=600.0, max_series=pods * 100)
    for tick, requests in enumerate(_decoded(pods, 5), start=1):
        for samples in requests:
            store.append(samples, float(tick))
    metadata = TRIGGERS["policy unified"]
    spec = parse_trigger(metadata, NAMESPACE)
    assert isinstance(spec, PolicySpec)
    windows, names = (spec.stable_window, spec.panic_window), pool_metrics(spec)
    triggers = Triggers(store, stale_after=600.0, warmup_until=0.0)
    now = 10.0
    triggers.evaluate(NAMESPACE, DEPLOYMENT, metadata, now)  # builds the pool view
    parts: dict[str, list[float]] = {"evaluate": [], "read_pools": [], "recommend": []}
    for _ in range(calls):
        now += 0.6
        started = time.perf_counter()
        triggers.evaluate(NAMESPACE, DEPLOYMENT, metadata, now)
        evaluated = time.perf_counter()
        stable, panic = read_pools(store, spec.selector, now, windows, 600.0, names)
        read = time.perf_counter()
        recommend(spec, PolicyState(), stable, panic, now)
        parts["evaluate"].append(evaluated - started)
        parts["read_pools"].append(read - evaluated)
        parts["recommend"].append(time.perf_counter() - read)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        now += 0.6
        triggers.evaluate(NAMESPACE, DEPLOYMENT, metadata, now)
    profile.disable()
    figures = ", ".join(f"{name} {sorted(t)[len(t) // 2] * 1e6:,.0f} us" for name, t in parts.items())
    stats = pstats.Stats(profile, stream=io.StringIO())
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    top = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:6]  # type: ignore[attr-defined]
    shares = "; ".join(f"{row[2] / total:.0%} {Path(where[0]).name}:{where[2]}" for where, row in top)
    return (
        f"SUMMARY policy evaluation in process: {pods:,} pods, quiet store, {calls} calls, p50: {figures}; "
        f"under cProfile, by self time: {shares}"
    )


def _push_in_step(
    store: Store,
    ticks: list[list[list[Sample]]],
    moments: list[float],
    read: Callable[[Store, float], None] | None,
    upkeep: list[float] | None = None,
) -> list[float]:
    """Rounds of pushes every 5 s (a request every 20 ms) until past the last moment, reading at each one;
    the push times after 70 s, sorted. With `upkeep`, the server's pool upkeep runs between them when
    a view falls due, and at least every POOL_UPKEEP seconds (scaler/app.py `_pool_upkeep`); each of its
    slices' times is added to it."""
    appends: list[float] = []
    round_start, last = 0.0, moments[-1]
    next_upkeep = POOL_UPKEEP
    while round_start <= last:
        for i, samples in enumerate(ticks[int(round_start / 5.0) % 2]):
            now = round_start + i * 0.02
            while moments and moments[0] < now:
                at = moments.pop(0)
                next_upkeep = _upkeep_until(store, next_upkeep, at, upkeep)
                if read is not None:
                    read(store, at)
            next_upkeep = _upkeep_until(store, next_upkeep, now, upkeep)
            started = time.perf_counter()
            store.append(samples, now)
            if now > 70.0:
                appends.append(time.perf_counter() - started)
        round_start += 5.0
    return sorted(appends)


def _upkeep_until(store: Store, at: float, until: float, slices: list[float] | None) -> float:
    """Run the upkeep at each moment it would wake before `until`; the next such moment."""
    if slices is None:
        return at
    at = min(at, max(store.next_due(), at - POOL_UPKEEP + 0.001))
    while at <= until:
        _upkeep(store, at, slices)
        at = at + min(POOL_UPKEEP, max(0.001, store.next_due() - at))
    return at


def _upkeep(store: Store, now: float, slices: list[float]) -> None:
    started = time.perf_counter()
    for _ in store.advance_views(now):
        ended = time.perf_counter()
        slices.append(ended - started)
        started = ended


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
    parser.add_argument("--sweep-pods", type=int, default=10_000, help="pods for the sweep line [10000]")
    parser.add_argument("--steady-pods", type=int, default=5_000, help="pods for the steady-reads line [5000]")
    parser.add_argument("--evaluation-pods", type=int, default=1_000, help="pods for the evaluation line [1000]")
    parser.add_argument("--smoke", action="store_true", help="10 and 100 pods, a few calls")
    parser.add_argument("--core-only", action="store_true", help="only the lines measured in this process")
    args = parser.parse_args()
    if args.smoke:
        args.pods, args.pushes, args.calls, args.budget, args.spacing = [10, 100], 2, 20, 5.0, 0.0
        args.sweep_pods, args.steady_pods, args.evaluation_pods = 200, 200, 100
    if args.core_only:
        print(steady_reads(args.steady_pods, seconds=60.0, reads=200))
        print(sweep_stall(args.sweep_pods))
        print(policy_evaluation(args.evaluation_pods))
        return
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
        slowest = "; ".join(
            f"{SHORT.get(name, name)} {' '.join(f'{t * 1e3:.2f}' for t in sorted(lat.seconds)[-5:])}"
            for name, lat in result.calls.items()
        )
        print(f"{result.pods:>6} slowest 5, ms: {slowest}")
        for name, text in result.profiles.items():
            print(f"  profile at {result.pods:,} pods, {name} (calls back to back):\n{text}")
    print(
        f"x: against the empty call before any push, on the same server. Rounds of calls start {args.spacing:g} s "
        "apart; the empty call is also timed among them."
    )
    policy = []
    for result in results:
        target = POLICY_TARGETS.get(result.pods)
        if target is None:
            continue
        calls, empty = result.calls["policy unified"], result.calls[IDLE]
        ratio = calls.quantile(0.99) / empty.quantile(0.99)
        verdict = "MET" if ratio <= target and not calls.errors else "NOT MET"
        policy.append(
            f"{result.pods:,} pods {calls.quantile(0.99) * 1e3:,.1f} ms = {ratio:,.1f}x "
            f"(empty {empty.quantile(0.99) * 1e3:.2f} ms; target <= {target:g}x: {verdict})"
        )
    if policy:
        print(f"SUMMARY policy: p99 at {'; '.join(policy)}")
    print(steady_reads(args.steady_pods, seconds=60.0 if not args.smoke else 6.0, reads=200 if not args.smoke else 20))
    print(sweep_stall(args.sweep_pods))
    print(policy_evaluation(args.evaluation_pods))
    largest = results[-1]
    empty = largest.calls[IDLE]
    ratios = {
        name: lat.quantile(0.99) / empty.quantile(0.99)
        for name, lat in largest.calls.items()
        if name in TRIGGERS and not name.startswith("policy")
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
