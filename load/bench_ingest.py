"""Ingest benchmark: accepted OTLP datapoints per second, and the scaler's CPU, over gRPC and HTTP.

The scaler runs as `python -m scaler serve` in its own process. Separate client processes push
pre-serialized `ExportMetricsServiceRequest`s (load/otlp_payloads.py: vLLM pods behind a collector)
as fast as the scaler answers, after one priming round has created every series. Accepted datapoints
are read from the scaler's own `/metrics`, CPU from /proc. In the same run, this process measures
the ceiling: how fast this machine's protobuf runtime merely parses the same requests, and how far
each step of the scaler's core (decode, Store.append) falls below it. It also runs rotel (the Rust
collector of the `rotel` package) with its OTLP gRPC receiver into its blackhole exporter, on the same
requests from the same clients: a native receiver's rate, which ours is reported as a ratio of. Rates
are datapoints per CPU-second, so a noisy shared machine moves both sides of each ratio alike.

    python load/bench_ingest.py                       # 10,000 pods (a few minutes)
    python load/bench_ingest.py --smoke               # a few seconds
    python load/bench_ingest.py --profile /tmp/prof   # also py-spy the scaler during each measurement
    python load/bench_ingest.py --series-per-pod 1    # pods whose collector keeps one metric, as KServe's does
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import itertools
import multiprocessing
import os
import re
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from otlp_payloads import SERIES_PER_POD, Batches, fleet, leading_specs
from scaler_process import ScalerProcess, spawn, terminate

TARGET_DATAPOINTS_PER_SECOND = 400_000
TARGET_CEILING_RATIO = 0.15
TARGET_ROTEL_RATIO = {"grpc": 0.3, "grpc-sidecar": 0.15}  # of rotel's rate on the same requests
EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
MAX_MESSAGE = 64 * 1024 * 1024
CEILING_PODS = 1000  # the in-process breakdown holds this many pods (creating series is the slow part)


def metric_value(page: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text page (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if wanted else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", page, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# -- profiling the scaler with py-spy ----------------------------------------------------------------------


class Profiler:
    """`py-spy record` on a pid for a while, into py-spy's raw (collapsed stacks) format."""

    def __init__(self, pid: int, seconds: float, output: Path, rate: int = 100) -> None:
        output.parent.mkdir(parents=True, exist_ok=True)
        self.output = output
        self.seconds = seconds
        self.rate = rate
        command = ["py-spy", "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
        command += ["--rate", str(rate), "--format", "raw", "--output", str(output), "--nonblocking"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def finish(self, top: int = 10) -> str:
        _, err = self.proc.communicate(timeout=self.seconds + 60)
        if self.proc.returncode != 0 or not self.output.exists():
            return f"py-spy failed: {err.strip()[-300:]}"
        return top_self_time(self.output, top, wall_samples=round(self.seconds * self.rate))


def top_self_time(raw: Path, top: int = 10, wall_samples: int | None = None) -> str:
    """The functions where the samples of a py-spy raw profile end, by share of all samples."""
    self_time: Counter[str] = Counter()
    line_of: dict[str, Counter[str]] = {}
    total = 0
    for row in raw.read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        if not stack:
            continue
        leaf = stack.rsplit(";", 1)[-1]
        match = re.fullmatch(r"(.*) \((.*?)(?::(\d+))?\)", leaf)
        function, where, line = match.groups() if match else (leaf, "?", None)
        key = f"{function} ({_short(where)})"
        self_time[key] += int(count)
        line_of.setdefault(key, Counter())[line or "?"] += int(count)
        total += int(count)
    busy = f", {total / wall_samples:.0%} of wall time on CPU" if wall_samples else ""
    lines = [f"    py-spy: {total} samples{busy}; top {top} by self time:"]
    for key, count in self_time.most_common(top):
        hot_line = line_of[key].most_common(1)[0][0]
        lines.append(f"    {count / total:6.1%}  {key} (hottest line {hot_line})")
    return "\n".join(lines)


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.split("/work/main/", 1)[-1]


# -- client processes ----------------------------------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    datapoints: int = 0
    rejected: int = 0
    errors: int = 0
    first_error: str = ""


@dataclass(frozen=True)
class Job:
    """One scenario for a client process: where and how to push, under a scenario number."""

    number: int
    transport: str  # grpc or http
    address: str  # host:port
    pods_per_request: int
    in_flight: int


class Clients:
    """Client processes, each holding its slice of the fleet serialized once, pushing one Job at a time.

    A job runs while the shared `running` number equals its own; then each process reports a Tally.
    """

    def __init__(self, pods: int, processes: int, series: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.events = context.Queue()
        self.running = context.RawValue("i", -1)
        share = -(-pods // processes)
        self.commands = [context.Queue() for _ in range(0, pods, share)]
        self.answered = context.RawArray("d", 2 * len(self.commands))  # datapoints, requests answered per process
        self.workers = [
            context.Process(
                target=client_process,
                args=(
                    first,
                    min(share, pods - first),
                    series,
                    commands,
                    self.events,
                    self.running,
                    self.answered,
                    slot,
                ),
                daemon=True,
            )
            for slot, (first, commands) in enumerate(zip(range(0, pods, share), self.commands, strict=True))
        ]
        for worker in self.workers:
            worker.start()
        _expect(self.events, "built", len(self.workers), timeout=600)
        self.processes = [psutil.Process(w.pid) for w in self.workers if w.pid is not None]

    def start(self, job: Job) -> None:
        """Push until stop(); returns once every client has sent each of its requests once."""
        self.running.value = job.number
        for commands in self.commands:
            commands.put(job)
        _expect(self.events, "primed", len(self.workers), timeout=600)

    def stop(self) -> Tally:
        self.running.value = -1
        total = Tally()
        for _, tally in _expect(self.events, "done", len(self.workers), timeout=300):
            for key in ("requests", "datapoints", "rejected", "errors"):
                setattr(total, key, getattr(total, key) + getattr(tally, key))
            total.first_error = total.first_error or tally.first_error
        return total

    def cpu_seconds(self) -> float:
        return sum(float(sum(p.cpu_times()[:2])) for p in self.processes)

    def answered_so_far(self) -> tuple[float, float]:
        """(datapoints, requests) answered OK so far; datapoints refused through partial success left out."""
        return float(sum(self.answered[0::2])), float(sum(self.answered[1::2]))

    def close(self) -> None:
        for commands in self.commands:
            commands.put(None)
        for worker in self.workers:
            worker.join(timeout=30)


def client_process(
    first: int, pods: int, series: int, commands: Any, events: Any, running: Any, answered: Any, slot: int
) -> None:
    """Serialize pods [first, first + pods) once, then push each Job round-robin while it runs."""
    per_pod = Batches(fleet(pods, first=first), series=series)
    events.put(("built", os.getpid()))
    while (job := commands.get()) is not None:
        batches = per_pod.requests(job.pods_per_request)
        sizes = [min(job.pods_per_request, pods - i) * series for i in range(0, pods, job.pods_per_request)]

        def count(datapoints: int) -> None:
            answered[2 * slot] += datapoints
            answered[2 * slot + 1] += 1

        primed = lambda: events.put(("primed", os.getpid()))  # noqa: E731
        tally = asyncio.run(_push(job, batches, sizes, primed, running, count))
        events.put(("done", tally))


async def _push(
    job: Job,
    batches: Sequence[bytes],
    sizes: Sequence[int],
    primed: Callable[[], None],
    running: Any,
    count: Callable[[int], None],
) -> Tally:
    import aiohttp
    import grpc
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

    tally = Tally()
    order = itertools.count()
    options = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
    channel = grpc.aio.insecure_channel(job.address, options=options)
    export = channel.unary_unary(EXPORT_METHOD)  # no serializers: the bytes go as they are
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=job.in_flight))
    url = f"http://{job.address}/v1/metrics"
    headers = {"Content-Type": "application/x-protobuf"}

    async def send(body: bytes) -> bytes:
        if job.transport == "grpc":
            reply: bytes = await export(body, timeout=120)
            return reply
        async with session.post(url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=120)) as r:
            r.raise_for_status()
            return await r.read()

    async def lane() -> None:
        while running.value == job.number:
            index = next(order) % len(batches)
            try:
                reply = await send(batches[index])
            except Exception as exc:  # count and go on: the table shows errors
                tally.errors += 1
                tally.first_error = tally.first_error or repr(exc)[:200]
                await asyncio.sleep(0.05)
                continue
            tally.requests += 1
            tally.datapoints += sizes[index]
            rejected = (
                ExportMetricsServiceResponse.FromString(reply).partial_success.rejected_data_points if reply else 0
            )
            tally.rejected += rejected
            count(sizes[index] - rejected)
            if tally.requests == len(batches) + job.in_flight:  # every batch has been answered once
                primed()

    try:
        await asyncio.gather(*(lane() for _ in range(job.in_flight)))
    finally:
        await session.close()
        await channel.close()
    return tally


# -- rotel: a native OTLP receiver on the same requests ---------------------------------------------------


def rotel_binary() -> tuple[Path | None, str]:
    """The rotel agent the `rotel` package ships (rotel/agent.py: `Agent.agent_path`), or None and why not."""
    try:
        from rotel.agent import Agent
    except ImportError as exc:
        return None, f"the rotel package is not installed ({exc}); pip install rotel"
    path = Path(Agent.agent_path)
    if not os.access(path, os.X_OK):
        return None, f"the rotel package has no runnable agent at {path}"
    return path, ""


def free_port() -> int:
    """A port free now (rotel cannot listen on port 0: it panics reporting the bound address)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RotelProcess:
    """`rotel-agent start` in the foreground with its OTLP receiver (metrics only) into the blackhole exporter."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.grpc_port, http_port = free_port(), free_port()
        command = [str(binary), "start", "--exporter", "blackhole", "--otlp-grpc-max-recv-msg-size-mib", "64"]
        command += ["--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}", "--otlp-http-endpoint"]
        command += [f"127.0.0.1:{http_port}", "--otlp-receiver-traces-disabled", "--otlp-receiver-logs-disabled"]
        command += ["--pid-file", str(workdir / "rotel.pid"), "--log-file", str(workdir / "rotel.log")]
        self.log = workdir / "rotel.out"
        self.proc = spawn(command, self.log)
        deadline = time.monotonic() + 30
        while not _listening(self.grpc_port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rotel did not start: {self.log.read_text(errors='replace')[-1000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def address(self, port: str) -> str:
        assert port == "otlp-grpc", "only rotel's gRPC receiver is measured"
        return f"127.0.0.1:{self.grpc_port}"

    def cpu_seconds(self) -> float:
        return float(sum(psutil.Process(self.pid).cpu_times()[:2]))

    def stop(self) -> None:
        terminate(self.proc)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# -- one measured scenario -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    transport: str
    pods_per_request: int
    receiver: str = "scaler"  # or "rotel"


@dataclass
class Measured:
    scenario: Scenario
    wall_rate: float  # accepted datapoints per second
    cpu_rate: float  # accepted datapoints per scaler CPU-second
    scaler_cores: float
    client_cores: float
    requests_per_second: float
    tally: Tally
    profile: str = ""


def run_scenario(
    server: ScalerProcess | RotelProcess, clients: Clients, number: int, scenario: Scenario, args: argparse.Namespace
) -> Measured:
    port = "otlp-grpc" if scenario.transport == "grpc" else "otlp-http"
    job = Job(number, scenario.transport, server.address(port), scenario.pods_per_request, args.in_flight)
    clients.start(job)
    try:
        before = _snapshot(server, scenario.transport, clients)
        profiler = None
        if args.profile and isinstance(server, ScalerProcess):
            profiler = Profiler(server.pid, args.seconds, args.profile / f"ingest-{scenario.name}.txt")
        time.sleep(args.seconds)
        after = _snapshot(server, scenario.transport, clients)
        profile = profiler.finish() if profiler else ""
    finally:
        tally = clients.stop()
    seconds = after["time"] - before["time"]
    accepted = after["accepted"] - before["accepted"]
    cpu = after["cpu"] - before["cpu"]
    return Measured(
        scenario,
        accepted / seconds,
        accepted / cpu if cpu > 0 else 0.0,
        cpu / seconds,
        (after["clients"] - before["clients"]) / seconds,
        (after["requests"] - before["requests"]) / seconds,
        tally,
        profile,
    )


def _snapshot(server: ScalerProcess | RotelProcess, transport: str, clients: Clients) -> dict[str, float]:
    """The scaler counts what it stored on its own `/metrics`; rotel's count is what the clients had answered."""
    if isinstance(server, ScalerProcess):
        page = server.self_metrics()
        accepted = metric_value(page, "keda_llm_scaler_datapoints_accepted_total", transport=transport)
        method = "otlp.Export" if transport == "grpc" else "otlp.http"
        requests = metric_value(page, "keda_llm_scaler_rpc_duration_seconds_count", method=method)
    else:
        accepted, requests = clients.answered_so_far()
    return {
        "time": time.perf_counter(),
        "accepted": accepted,
        "cpu": server.cpu_seconds(),
        "requests": requests,
        "clients": clients.cpu_seconds(),
    }


def _expect(events: Any, kind: str, count: int, timeout: float) -> list[Any]:
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        event, value = events.get(timeout=max(0.1, deadline - time.monotonic()))
        if event == kind:
            found.append((event, value))
    return found


# -- the ceiling: the protobuf runtime alone, and the scaler's core step by step -----------------------------


def core_decoder() -> Callable[[Any], Any]:
    """scaler.otlp.decode_export_request as the receiver calls it: with one long-lived label cache, if the
    core has one (it is being optimized while these benchmarks exist; they should not need editing)."""
    from scaler import otlp

    if hasattr(otlp, "LabelCache") and "cache" in inspect.signature(otlp.decode_export_request).parameters:
        cache = otlp.LabelCache()
        return lambda request: otlp.decode_export_request(request, cache)
    return otlp.decode_export_request


def ceiling(pods: int, pods_per_request: int, seconds: float, series: int) -> dict[str, float]:
    """Datapoints per CPU-second for parsing the requests, and for each further step of the core."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from scaler.store import Store

    decode_export_request = core_decoder()
    bodies = Batches(fleet(pods), series=series).requests(pods_per_request)
    datapoints = pods * series
    parse = ExportMetricsServiceRequest.FromString
    store = Store(retention=120.0, max_series=10**9)
    for body in bodies:  # create every series first: steady state, as in the scaler
        store.append(decode_export_request(parse(body)).samples, 0.0)
    clock = itertools.count(1)

    def append_all() -> None:
        now = float(next(clock))
        for body in bodies:
            store.append(decode_export_request(parse(body)).samples, now)

    def parse_all() -> None:
        for body in bodies:
            parse(body)

    def walk_all() -> None:
        for body in bodies:
            _walk(parse(body))

    def decode_all() -> None:
        for body in bodies:
            decode_export_request(parse(body))

    steps = {"parse": parse_all, "walk": walk_all, "decode": decode_all, "append": append_all}
    return {name: datapoints / _cpu_per_round(step, seconds) for name, step in steps.items()}


def _cpu_per_round(step: Callable[[], None], seconds: float) -> float:
    rounds, started = 0, time.process_time()
    while True:
        step()
        rounds += 1
        spent = time.process_time() - started
        if spent >= seconds:
            return spent / rounds


def _walk(request: Any) -> int:
    """Touch every field the scaler needs, doing nothing with it: the least any Python decoder must do."""
    touched = 0
    for resource_metrics in request.resource_metrics:
        touched += sum(len(kv.key) + len(kv.value.string_value) for kv in resource_metrics.resource.attributes)
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                which = metric.WhichOneof("data")
                for point in getattr(metric, which).data_points:
                    touched += sum(len(kv.key) + len(kv.value.string_value) for kv in point.attributes)
                    if which == "histogram":
                        touched += len(point.bucket_counts) + len(point.explicit_bounds) + int(point.sum)
                    else:
                        touched += int(point.as_double) + point.start_time_unix_nano
    return touched


# -- report ----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--pods-per-request", type=int, default=100, help="a collector batch [100 pods]")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per scenario")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--in-flight", type=int, default=4, help="requests in flight per client process")
    parser.add_argument("--no-sidecar", action="store_true", help="skip the one-pod-per-request gRPC scenario")
    parser.add_argument("--no-rotel", action="store_true", help="skip rotel's rows")
    parser.add_argument("--profile", type=Path, help="py-spy the scaler during each scenario, into this folder")
    parser.add_argument(
        "--series-per-pod",
        type=int,
        default=SERIES_PER_POD,
        help=f"keep each pod's first metrics, this many series (1: one gauge, as KServe's filter) [{SERIES_PER_POD}]",
    )
    parser.add_argument("--smoke", action="store_true", help="a tiny fleet for a few seconds")
    args = parser.parse_args()
    try:
        specs = leading_specs(args.series_per_pod)
    except ValueError as exc:
        parser.error(f"--series-per-pod: {exc}")
    if args.smoke:
        args.pods, args.pods_per_request, args.seconds, args.clients = 100, 25, 1.0, 1
    scenarios = [
        Scenario("grpc", "grpc", args.pods_per_request),
        Scenario("http", "http", args.pods_per_request),
    ]
    if not args.no_sidecar and not args.smoke:
        scenarios.append(Scenario("grpc-sidecar", "grpc", 1))
    rotel, why_not = rotel_binary() if not args.no_rotel else (None, "--no-rotel")
    if rotel is not None:
        scenarios += [
            Scenario(f"rotel-{s.name}", "grpc", s.pods_per_request, "rotel") for s in scenarios if s.transport == "grpc"
        ]

    ceiling_pods = min(args.pods, CEILING_PODS)
    series = args.series_per_pod
    rates = ceiling(ceiling_pods, args.pods_per_request, 0.2 if args.smoke else 5.0, series)
    flags = ["--max-series", str(args.pods * series * 2), "--warmup", "0s"]
    clients = Clients(args.pods, args.clients, series)
    try:
        scaler = ScalerProcess(*flags)
        with scaler, tempfile.TemporaryDirectory(prefix="rotel-") as workdir:
            native = RotelProcess(rotel, Path(workdir)) if rotel is not None else None
            try:
                servers = {"scaler": scaler, "rotel": native}
                measured = [
                    run_scenario(servers[s.receiver] or scaler, clients, n, s, args) for n, s in enumerate(scenarios)
                ]
            finally:
                if native is not None:
                    native.stop()
    finally:
        clients.close()

    top = rates["parse"]
    print(
        f"ingest: {args.pods:,} pods x {series} series ({sum(s.kind == 'histogram' for s in specs)} histograms) = "
        f"{args.pods * series:,} datapoints a round; {args.clients} client processes x {args.in_flight} "
        f"requests in flight; {args.seconds:g} s measured per scenario; {os.cpu_count()} CPUs"
    )
    header = (
        f"{'path':<44} {'dp/s wall':>10} {'server CPU':>10} {'client CPU':>10} {'req/s':>7} "
        f"{'dp/CPU-s':>10} {'x ceiling':>9}"
    )
    print(header)
    print("-" * len(header))
    labels = {
        "parse": "ceiling: parse only (upb ParseFromString)",
        "walk": "  parse + touch every field in Python",
        "decode": "  parse + scaler.otlp decode",
        "append": "  parse + decode + Store.append",
    }
    for key, label in labels.items():
        print(f"{label:<44} {'-':>10} {'1 core':>10} {'-':>10} {'-':>7} {rates[key]:>10,.0f} {rates[key] / top:>8.3f}x")
    for m in measured:
        label = f"{m.scenario.transport} full path, {m.scenario.pods_per_request} pods/request"
        if m.scenario.receiver == "rotel":
            label = f"rotel: grpc into blackhole, {m.scenario.pods_per_request} pods/request"
        print(
            f"{label:<44} {m.wall_rate:>10,.0f} {m.scaler_cores:>8.2f} c {m.client_cores:>8.2f} c "
            f"{m.requests_per_second:>7,.0f} {m.cpu_rate:>10,.0f} {m.cpu_rate / top:>8.3f}x"
        )
        if m.tally.errors or m.tally.rejected:
            print(f"    client saw {m.tally.errors} errors, {m.tally.rejected} rejected points: {m.tally.first_error}")
        if m.profile:
            print(m.profile)
    print(
        f"dp/CPU-s: accepted datapoints per CPU-second of the server (all its threads), i.e. the rate on one "
        f"core; the breakdown rows ran in-process on {ceiling_pods:,} pods."
    )
    print(against_rotel(measured, why_not))
    summary = []
    met = True
    for m in measured:
        if m.scenario.receiver != "scaler":
            continue
        ratio = m.cpu_rate / top
        if m.scenario.name == "grpc":
            met = m.cpu_rate >= TARGET_DATAPOINTS_PER_SECOND and ratio >= TARGET_CEILING_RATIO
        summary.append(f"{m.scenario.name} {m.cpu_rate:,.0f} dp/s per core = {ratio:.3f}x parse ceiling")
    print(
        f"SUMMARY ingest: {'; '.join(summary)} (ceiling {top:,.0f} dp/s); target grpc >= "
        f"{TARGET_DATAPOINTS_PER_SECOND:,} dp/s per core and >= {TARGET_CEILING_RATIO}x: {'MET' if met else 'NOT MET'}"
    )


def against_rotel(measured: Sequence[Measured], why_not: str) -> str:
    """Our rate as a ratio of rotel's on the same requests, batched and one pod per request, with its verdict."""
    if why_not:
        return f"ROTEL ingest: skipped, {why_not}"
    native = {m.scenario.name.removeprefix("rotel-"): m for m in measured if m.scenario.receiver == "rotel"}
    parts, met = [], True
    for m in measured:
        base = native.get(m.scenario.name) if m.scenario.receiver == "scaler" else None
        if base is None or base.cpu_rate <= 0:
            continue
        ratio, target = m.cpu_rate / base.cpu_rate, TARGET_ROTEL_RATIO[m.scenario.name]
        met = met and ratio >= target
        parts.append(
            f"{m.scenario.name} ({m.scenario.pods_per_request} pods/request) {m.cpu_rate:,.0f} vs rotel "
            f"{base.cpu_rate:,.0f} dp/s per core = {ratio:.3f}x (target >= {target}x)"
        )
    return f"ROTEL ingest: {'; '.join(parts)}: {'MET' if met else 'NOT MET'}"


if __name__ == "__main__":
    main()
