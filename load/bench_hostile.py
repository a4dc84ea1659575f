"""Hostile benchmark: 18 attacks from an adversarial review, each beside a well-behaved client, on a real scaler.

Every row runs on its own fresh `python -m scaler serve` process on 127.0.0.1 (every port 0,
`--warmup 0s`, short retention); a row whose attack kills it says "scaler died". A good client in
its own process pushes a keeper series over OTLP/gRPC every second and calls GetMetrics (KEDA's
ExternalScaler, generated stubs) every 100 ms on a query over it; its latency during each attack is
compared with a baseline row measured first, in the same run. The scaler's RSS is sampled every
100 ms (psutil). Each attack runs for --seconds (one of a set count, such as 100k points or 40 pushes, may
take up to 3 x --seconds to send it all), is bounded in count, sends traffic only to 127.0.0.1 (the rate
rows push from 127.0.0.2-4, so they do not share the good client's per-address bucket) and reports
what the attacker saw. Rows report, they do not gate: exit status 0 whenever the run completes.

    python load/bench_hostile.py                 # every attack for 5 s (a few minutes)
    python load/bench_hostile.py --smoke         # every attack for about 1 s, fewer repetitions (< 60 s)
    python load/bench_hostile.py --json rows.json --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import resource
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import grpc
import psutil
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from scaler_process import ScalerProcess

from scaler.externalscaler import externalscaler_pb2 as pb
from scaler.externalscaler import externalscaler_pb2_grpc as pb_grpc

TARGET_P99_MS = 100.0
TARGET_RSS_MIB = 512.0
EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
MAX_MESSAGE = 64 * 1024 * 1024
MiB = 1024 * 1024
COMMON_FLAGS = ("--warmup", "0s", "--retention", "30s", "--stale-after", "15s")
CHILD_NOFILE = 1024  # the open-file limit of the scaler in the idle-connections row
KEEPER_VALUE = 3.0
KEEPER_METADATA = {
    "metricQuery": 'sum(hostile_keeper_running{namespace="good", deployment="keeper"})',
    "targetValue": "4",
}
POLL_EVERY, PUSH_EVERY, CALL_TIMEOUT = 0.1, 1.0, 2.0
ALT_SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")  # source addresses of the rate rows' HTTP pushes
TOKENS = {"keeper": "keeper-token-0123456789abcdef", "tenant-a": "tenant-a-token-0123456789abcdef"}
OPS_TOKEN = "ops-token-0123456789abcdef"
_CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


# -- the scaler under test, one process per row ---------------------------------------------------------


class RssSampler:
    """The child's RSS every 100 ms, in a thread: first, peak and last sample."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.process.memory_info().rss / MiB)
            except psutil.Error:
                return
            self._stop.wait(0.1)

    def finish(self) -> tuple[float, float, float]:
        self._stop.set()
        self._thread.join(timeout=5)
        if not self.samples:
            return math.nan, math.nan, math.nan
        return self.samples[0], max(self.samples), self.samples[-1]


# -- the good client, in its own process ------------------------------------------------------------------


def _keeper_body() -> bytes:
    labels = {"namespace": "good", "deployment": "keeper", "pod": "keeper-0"}
    point = _number(labels, KEEPER_VALUE, time.time_ns())
    return _request([_gauge("hostile_keeper_running", [point])], {"k8s.pod.name": "keeper-0"}).SerializeToString()


class GoodClient:
    """A keeper series pushed every second and GetMetrics every 100 ms over it; each call timed."""

    def __init__(self, otlp: str, scaler: str, token: str | None) -> None:
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.otlp_channel = grpc.insecure_channel(otlp)
        self.export = self.otlp_channel.unary_unary(EXPORT_METHOD)
        self.scaler_channel = grpc.insecure_channel(scaler)
        self.stub = pb_grpc.ExternalScalerStub(self.scaler_channel)
        self.ref = pb.ScaledObjectRef(name="keeper", namespace="good", scalerMetadata=KEEPER_METADATA)
        self.lock = threading.Lock()
        self.measuring = False
        self.latencies: list[float] = []
        self.called_at: list[float] = []  # time.monotonic() when each timed call began (one clock for every process)
        self.errors: Counter[str] = Counter()
        self.first_error = ""
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._keep, daemon=True)]

    def ready(self, timeout: float = 10.0) -> str:
        """Start pushing; once GetMetrics answers the keeper's value, start polling. '' or why not."""
        self.threads[0].start()
        deadline, why = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            try:
                reply = self.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=self.ref), timeout=CALL_TIMEOUT)
                if reply.metricValues and reply.metricValues[0].metricValueFloat == KEEPER_VALUE:
                    why = ""
                    break
                why = f"value {reply.metricValues[0].metricValueFloat if reply.metricValues else None}"
            except grpc.RpcError as exc:
                why = f"{exc.code().name}: {exc.details()}"[:200]
            time.sleep(0.05)
        self.threads.append(threading.Thread(target=self._poll, daemon=True))
        self.threads[1].start()
        return why

    def _keep(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                reply = self.export(_keeper_body(), metadata=self.metadata, timeout=CALL_TIMEOUT)
                if ExportMetricsServiceResponse.FromString(reply).partial_success.rejected_data_points:
                    self._error("keeper push partly refused")
            except grpc.RpcError as exc:
                self._error(f"keeper push {exc.code().name}", exc.details())
            self.stopping.wait(max(0.0, PUSH_EVERY - (time.monotonic() - started)))

    def _poll(self) -> None:
        request = pb.GetMetricsRequest(scaledObjectRef=self.ref)
        due = time.monotonic()
        while not self.stopping.is_set():
            began, started = time.monotonic(), time.perf_counter()
            try:
                reply = self.stub.GetMetrics(request, timeout=CALL_TIMEOUT)
                value = reply.metricValues[0].metricValueFloat if reply.metricValues else None
                error = "" if value == KEEPER_VALUE else f"GetMetrics answered {value}"
            except grpc.RpcError as exc:
                error = f"GetMetrics {exc.code().name}: {exc.details()}"
            with self.lock:
                if self.measuring:
                    self.latencies.append(time.perf_counter() - started)  # failed calls too: the client waited
                    self.called_at.append(began)
            if error:
                self._error(error.split(":")[0], error)
            due = max(due + POLL_EVERY, time.monotonic())  # a late call is not made up for
            self.stopping.wait(max(0.0, due - time.monotonic()))

    def _error(self, kind: str, details: str | None = "") -> None:
        with self.lock:
            if self.measuring:
                self.errors[kind] += 1
                self.first_error = self.first_error or f"{kind}: {details or ''}"[:200]

    def begin(self) -> None:
        with self.lock:
            self.measuring, self.latencies, self.called_at = True, [], []
            self.errors, self.first_error = Counter(), ""

    def end(self) -> dict[str, Any]:
        with self.lock:
            self.measuring = False
            return {
                "latencies": self.latencies,
                "called_at": self.called_at,
                "errors": dict(self.errors),
                "first_error": self.first_error,
            }

    def close(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=CALL_TIMEOUT + 1)
        self.otlp_channel.close()
        self.scaler_channel.close()


def good_client_process(conn: Any) -> None:
    """Commands over a pipe: connect (otlp, scaler, token) -> why-not, begin, end -> figures, quit."""
    client: GoodClient | None = None
    while True:
        command, *arguments = conn.recv()
        if command == "connect":
            if client:
                client.close()
            client = GoodClient(*arguments)
            conn.send(client.ready())
        elif command == "begin" and client:
            client.begin()
            conn.send("")
        elif command == "end" and client:
            conn.send(client.end())
        elif command == "quit":
            if client:
                client.close()
            return


class GoodClientProcess:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.proc = context.Process(target=good_client_process, args=(theirs,), daemon=True)
        self.proc.start()
        self.broken = False

    def call(self, *command: Any, timeout: float = 30.0) -> Any:
        try:
            self.conn.send(command)
            if self.conn.poll(timeout):
                return self.conn.recv()
        except (OSError, EOFError):
            pass
        self.broken = True  # a late answer would be read as the next one's: the run replaces this client
        raise RuntimeError(f"the good client did not answer {command[0]!r}")

    def close(self) -> None:
        if not self.broken:
            self.conn.send(("quit",))
            self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=10)


# -- OTLP payloads (opentelemetry-proto classes) ----------------------------------------------------------


def _kvs(attributes: dict[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attributes.items()]


def _request(metrics: list[Metric], resource_attributes: dict[str, str] | None = None) -> ExportMetricsServiceRequest:
    resource_metrics = ResourceMetrics(
        resource=Resource(attributes=_kvs(resource_attributes or {})), scope_metrics=[ScopeMetrics(metrics=metrics)]
    )
    return ExportMetricsServiceRequest(resource_metrics=[resource_metrics])


def _number(labels: dict[str, str], value: float, time_ns: int = 0, start_ns: int = 0) -> NumberDataPoint:
    point = NumberDataPoint(attributes=_kvs(labels), as_double=value, time_unix_nano=time_ns or time.time_ns())
    point.start_time_unix_nano = start_ns
    return point


def _gauge(name: str, points: list[NumberDataPoint]) -> Metric:
    return Metric(name=name, gauge=Gauge(data_points=points))


def gauges(name: str, namespace: str, count: int) -> bytes:
    labels = [{"namespace": namespace, "pod": f"{namespace}-{i}"} for i in range(count)]
    return _request([_gauge(name, [_number(one, 1.0) for one in labels])]).SerializeToString()


def regex_targets() -> bytes:
    """Two series whose pod label is 28 and 2,048 `a`s (2,048 is the default --max-label-length)."""
    points = [_number({"namespace": "regex", "len": str(n), "pod": "a" * n}, 1.0) for n in (28, 2048)]
    return _request([_gauge("hostile_regex_target", points)]).SerializeToString()


def wide_label_sets(first: int, count: int) -> bytes:
    """`count` gauge points, each its own label set with one 8 KB value: over --max-label-length."""
    blob = KeyValue(key="blob", value=AnyValue(string_value="b" * 8192))
    points = []
    for i in range(first, first + count):
        point = NumberDataPoint(as_double=1.0, time_unix_nano=time.time_ns())
        point.attributes.extend([blob, *_kvs({"namespace": "wide", "pod": f"attacker-{i}"})])
        points.append(point)
    return _request([_gauge("vllm:num_requests_running", points)]).SerializeToString()


@cache
def million_buckets() -> bytes:
    """One cumulative histogram point with 1,000,000 bounds (1,000,001 buckets): about 16 MB."""
    bounds = [float(i) for i in range(1_000_000)]
    point = HistogramDataPoint(
        attributes=_kvs({"namespace": "buckets", "pod": "hist-0"}),
        start_time_unix_nano=time.time_ns() - 60 * 10**9,
        time_unix_nano=time.time_ns(),
        count=len(bounds) + 1,
        sum=float(len(bounds)),
        bucket_counts=[1] * (len(bounds) + 1),
        explicit_bounds=bounds,
    )
    histogram = Histogram(data_points=[point], aggregation_temporality=_CUMULATIVE)
    return _request([Metric(name="hostile_buckets_seconds", histogram=histogram)]).SerializeToString()


@cache
def flood(points: int = 200_000, series: int = 10_000) -> bytes:
    """`points` gauge points in one request, `series` series with points/series each: within every default limit."""
    now = time.time_ns()
    data = [
        NumberDataPoint(
            attributes=_kvs({"pod": f"f{i % series}"}), as_double=float(i), time_unix_nano=now + i // series
        )
        for i in range(points)
    ]
    return _request([_gauge("hostile_flood", data)], {"namespace": "flood"}).SerializeToString()


def many_quantiles(quantiles: int = 20_000) -> bytes:
    values = [SummaryDataPoint.ValueAtQuantile(quantile=i / quantiles, value=float(i)) for i in range(quantiles)]
    point = SummaryDataPoint(
        attributes=_kvs({"namespace": "rate", "pod": "summary-0"}),
        time_unix_nano=time.time_ns(),
        count=quantiles,
        sum=float(quantiles),
        quantile_values=values,
    )
    return _request([Metric(name="hostile_summary", summary=Summary(data_points=[point]))]).SerializeToString()


def foreign_namespace() -> bytes:
    point = _number({"namespace": "tenant-a", "pod": "a-0"}, 1.0)
    resource_attributes = {"k8s.namespace.name": "tenant-b", "k8s.pod.name": "a-0"}
    return _request([_gauge("vllm:num_requests_running", [point])], resource_attributes).SerializeToString()


def late_counter(value: float, time_ns: int, start_ns: int) -> bytes:
    point = _number({"namespace": "late", "pod": "late-0"}, value, time_ns, start_ns)
    total = Sum(data_points=[point], aggregation_temporality=_CUMULATIVE, is_monotonic=True)
    return _request([Metric(name="hostile_late_requests_total", sum=total)]).SerializeToString()


def invalid_values() -> bytes:
    """A monotonic delta sum with a negative delta, and a summary whose quantile is NaN."""
    now = time.time_ns()
    delta = _number({"namespace": "invalid", "pod": "d-0"}, -5.0, now, now - 10**9)
    negative = Metric(
        name="hostile_delta_total", sum=Sum(data_points=[delta], aggregation_temporality=_DELTA, is_monotonic=True)
    )
    quantile = SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=math.nan)
    point = SummaryDataPoint(attributes=_kvs({"namespace": "invalid", "pod": "s-0"}), time_unix_nano=now)
    point.count, point.sum = 1, 1.0
    point.quantile_values.append(quantile)
    nan = Metric(name="hostile_nan_seconds", summary=Summary(data_points=[point]))
    return _request([negative, nan]).SerializeToString()


@cache
def gzip_bomb(inflated: int = 1 << 30) -> bytes:
    """One gzip stream of `inflated` zero bytes (about 1 MiB): repeated fully flushed deflate blocks.

    After a full flush the deflate output of the same 1 MiB input repeats byte for byte, so the body
    is built by repetition; the gzip trailer (CRC-32 and length of the whole input) is computed here.
    """
    chunk = bytes(MiB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    final_block = compressor.flush(zlib.Z_FINISH)[:-8]  # without the trailer of 2 MiB
    crc = 0
    for _ in range(inflated // MiB):
        crc = zlib.crc32(chunk, crc)
    trailer = struct.pack("<II", crc, inflated & 0xFFFFFFFF)
    return first + repeated * (inflated // MiB - 1) + final_block + trailer


# -- what the attacker uses -------------------------------------------------------------------------------


@dataclass
class Calls:
    """Outcomes of repeated calls of one kind: answers counted, times, values seen."""

    codes: Counter[str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    values: Counter[str] = field(default_factory=Counter)
    details: dict[str, str] = field(default_factory=dict)

    def add(self, code: str, seconds: float, value: float | None = None, detail: str = "") -> None:
        self.codes[code] += 1
        self.seconds.append(seconds)
        if value is not None:
            self.values[f"{value:g}"] += 1
        if detail:
            self.details.setdefault(code, detail[:120])

    @property
    def slowest(self) -> float:
        return max(self.seconds, default=math.nan)

    def text(self) -> str:
        codes = ", ".join(f"{code} x{n}" for code, n in self.codes.most_common())
        values = f" (value {', '.join(self.values)})" if self.values else ""
        return f"{codes or 'no calls'}{values}, slowest {_ms(self.slowest)}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def get_metrics(stub: Any, ref: pb.ScaledObjectRef, timeout: float = 10.0) -> tuple[str, float, float | None, str]:
    started = time.perf_counter()
    try:
        reply = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref), timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code().name, time.perf_counter() - started, None, exc.details() or ""
    value = reply.metricValues[0].metricValueFloat if reply.metricValues else None
    return "OK", time.perf_counter() - started, value, ""


def export(call: Any, body: bytes, metadata: tuple[tuple[str, str], ...] = (), timeout: float = 30.0) -> tuple:
    """(code, rejected points, partial-success message, seconds) of one OTLP/gRPC export."""
    started = time.perf_counter()
    try:
        reply = ExportMetricsServiceResponse.FromString(call(body, metadata=metadata, timeout=timeout))
    except grpc.RpcError as exc:
        return exc.code().name, 0, exc.details() or "", time.perf_counter() - started
    partial = reply.partial_success
    return "OK", partial.rejected_data_points, partial.error_message, time.perf_counter() - started


@dataclass
class HttpAnswer:
    status: str  # "413", or the exception's name
    headers: dict[str, str]
    body: bytes
    seconds: float

    def rejected(self) -> int:
        if self.status != "200" or not self.body:
            return 0
        return ExportMetricsServiceResponse.FromString(self.body).partial_success.rejected_data_points


def http_call(
    port: int, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, source: str = "127.0.0.1"
) -> HttpAnswer:
    """One request on a fresh connection to 127.0.0.1 (from `source`)."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        connection.request("GET" if body is None else "POST", path, body=body, headers=headers or {})
        reply = connection.getresponse()
        data = reply.read()
        return HttpAnswer(str(reply.status), dict(reply.getheaders()), data, time.perf_counter() - started)
    except (OSError, http.client.HTTPException) as exc:
        return HttpAnswer(type(exc).__name__, {}, b"", time.perf_counter() - started)
    finally:
        connection.close()


def otlp_http(ctx: Ctx, body: bytes, source: str, gzip: bool = False) -> HttpAnswer:
    headers = {"Content-Type": "application/x-protobuf"} | ({"Content-Encoding": "gzip"} if gzip else {})
    return http_call(ctx.child.ports["otlp-http"], "/v1/metrics", body, headers, source)


@cache
def alt_sources() -> tuple[str, ...]:
    """127.0.0.2-4 when this machine can send from them (Linux routes 127/8 to lo), else 127.0.0.1."""
    try:
        with socket.socket() as probe:
            probe.bind((ALT_SOURCES[0], 0))
    except OSError:
        return ("127.0.0.1",) * len(ALT_SOURCES)
    return ALT_SOURCES


# -- the attacks ------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    child: ScalerProcess
    args: argparse.Namespace
    deadline: float = 0.0

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    def counting(self) -> bool:
        """For attacks of a set count: they may take up to 3 x --seconds to send it all."""
        return time.monotonic() < self.deadline + 2 * self.args.seconds

    def n(self, full: int, smoke: int) -> int:
        return smoke if self.args.smoke else full

    def paced(self, interval: float, limit: int = 10**9) -> Iterator[int]:
        """Rounds `interval` apart until the deadline, at most `limit`."""
        for k in range(limit):
            if not self.running():
                return
            yield k
            time.sleep(max(0.0, min(interval, self.deadline - time.monotonic())))

    def channel(self, port: str) -> grpc.Channel:
        options = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
        return grpc.insecure_channel(self.child.address(port), options=options)


@dataclass
class Outcome:
    saw: str
    expected: bool | None = None  # None: the review named no expected answer
    figures: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (start, end), time.monotonic()


def _push_regex_targets(ctx: Ctx) -> None:
    with ctx.channel("otlp-grpc") as channel:
        code, rejected, message, _ = export(channel.unary_unary(EXPORT_METHOD), regex_targets())
    if code != "OK" or rejected:
        raise RuntimeError(f"the regex targets were refused: {code} {rejected} {message}")


def _regex_calls(ctx: Ctx, namespaces: tuple[str, ...]) -> Outcome:
    calls: dict[tuple[str, int], Calls] = {(ns, n): Calls() for ns in namespaces for n in (28, 2048)}
    with ctx.channel("scaler") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        refs = {
            (ns, n): pb.ScaledObjectRef(
                name=f"regex-{n}",
                namespace=ns,
                scalerMetadata={
                    "metricQuery": f'sum(hostile_regex_target{{len="{n}", pod=~"(a+)+b"}})',
                    "targetValue": "1",
                },
            )
            for ns, n in calls
        }
        for _ in ctx.paced(0.02):
            for key, ref in refs.items():
                calls[key].add(*get_metrics(stub, ref))
    parts = [f"{n} a's{f' from ns {ns}' if len(namespaces) > 1 else ''}: {c.text()}" for (ns, n), c in calls.items()]
    slowest = max(c.slowest for c in calls.values())
    return Outcome("; ".join(parts), slowest < TARGET_P99_MS / 1e3, {"slowest_s": slowest})


def regex_backtracking(ctx: Ctx) -> Outcome:
    return _regex_calls(ctx, ("regex",))


def regex_isolated(ctx: Ctx) -> Outcome:
    return _regex_calls(ctx, ("regex", "other"))  # its own tenant's long labels, and another tenant's


def regex_unsupported(ctx: Ctx) -> Outcome:
    patterns = {"lookahead": "(?=a)a+", "lookbehind": "(?<=a)b", "backreference": r"(a)\1"}
    calls = {name: Calls() for name in patterns}
    with ctx.channel("scaler") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        for _ in ctx.paced(0.02):
            for name, pattern in patterns.items():
                query = f'sum(hostile_keeper_running{{namespace="good", pod=~"{pattern}"}})'
                ref = pb.ScaledObjectRef(
                    name=name, namespace="good", scalerMetadata={"metricQuery": query, "targetValue": "1"}
                )
                calls[name].add(*get_metrics(stub, ref))
    expected = all(set(c.codes) == {"INVALID_ARGUMENT"} for c in calls.values())
    return Outcome("; ".join(f"{name}: {c.text()}" for name, c in calls.items()), expected)


def huge_pod_selector(ctx: Ctx) -> Outcome:
    pattern = ("(a|b)*c" * 520_000)[:3_600_000]
    metadata = {"policy": "vllm", "namespace": "good", "podSelector": f'{{pod=~"{pattern}"}}'}
    calls = Calls()
    with ctx.channel("scaler") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        for k in ctx.paced(0.05, limit=ctx.n(40, 5)):
            calls.add(
                *get_metrics(stub, pb.ScaledObjectRef(name=f"selector-{k}", namespace="good", scalerMetadata=metadata))
            )
    expected = set(calls.codes) == {"INVALID_ARGUMENT"} and calls.slowest < TARGET_P99_MS / 1e3
    return Outcome(f"3.6 MB podSelector: {calls.text()}", expected)


def refused_label_sets(ctx: Ctx) -> Outcome:
    total, per_request = ctx.n(100_000, 10_000), 1000
    sent = rejected = 0
    codes: Counter[str] = Counter()
    with ctx.channel("otlp-grpc") as channel:
        call = channel.unary_unary(EXPORT_METHOD)
        while sent < total and ctx.counting():
            code, refused, message, _ = export(call, wide_label_sets(sent, per_request))
            codes[code] += 1
            sent, rejected = sent + per_request, rejected + refused
    expected = rejected == sent and set(codes) == {"OK"}
    return Outcome(f"partial success rejected {rejected:,} of {sent:,} points ({_counted(codes)})", expected)


def _counted(codes: Counter[str]) -> str:
    return ", ".join(f"{code} x{n}" for code, n in codes.most_common())


def huge_histogram(ctx: Ctx) -> Outcome:
    body, codes, rejected, slowest, message = million_buckets(), Counter[str](), 0, 0.0, ""
    with ctx.channel("otlp-grpc") as channel:
        call = channel.unary_unary(EXPORT_METHOD)
        for _ in range(ctx.n(40, 5)):
            if not ctx.counting():
                break
            code, refused, detail, seconds = export(call, body)
            codes[code] += 1
            rejected, slowest, message = rejected + refused, max(slowest, seconds), message or detail
    saw = f"{_counted(codes)} of {sum(codes.values())} pushes ({len(body) / MiB:.1f} MiB each), slowest "
    return Outcome(saw + f"{_ms(slowest)}; partial success rejected {rejected}; first message: {message[:90]!r}")


def gzip_bombs(ctx: Ctx) -> Outcome:
    bomb, answers = gzip_bomb(), Counter[str]()
    slowest = 0.0
    with ThreadPoolExecutor(30) as pool:
        for _ in range(ctx.n(5, 1)):
            if not ctx.running():
                break
            for answer in pool.map(lambda _: otlp_http(ctx, bomb, "127.0.0.1", gzip=True), range(30)):
                answers[answer.status] += 1
                slowest = max(slowest, answer.seconds)
    saw = f"HTTP {_counted(answers)} ({len(bomb) / MiB:.2f} MiB -> 1 GiB each, 30 at once), slowest {_ms(slowest)}"
    return Outcome(saw, bool(answers) and set(answers) <= {"413", "429"})  # refused, whether by size or in-flight bytes


def huge_metadata(ctx: Ctx) -> Outcome:
    count, big = ctx.n(40, 10), "x" * 3_500_000
    kinds = {"*FromEnv value": Calls(), "ScaledObject name": Calls()}
    with ctx.channel("scaler") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        refs = {
            "*FromEnv value": [
                pb.ScaledObjectRef(
                    name=f"env-{i}",
                    namespace="good",
                    scalerMetadata={**KEEPER_METADATA, "passwordFromEnv": f"{big}{i}"},
                )
                for i in range(count)
            ],
            "ScaledObject name": [
                pb.ScaledObjectRef(name=f"{big}{i}", namespace="good", scalerMetadata=KEEPER_METADATA)
                for i in range(count)
            ],
        }
        for kind, each in refs.items():
            for ref in each:
                if ctx.counting():
                    kinds[kind].add(*get_metrics(stub, ref))
    page = http_call(ctx.child.ports["http"], "/metrics")
    size = len(page.body)
    saw = "; ".join(f"{sum(c.codes.values())} x 3.5 MB {kind}: {c.text()}" for kind, c in kinds.items())
    return Outcome(f"{saw}; /metrics {page.status} {size / 1024:,.0f} KiB", size < MiB, {"metrics_bytes": size})


def big_requests(ctx: Ctx) -> Outcome:
    body, calls, rejected = flood(), Calls(), 0
    with ctx.channel("otlp-grpc") as channel:
        call = channel.unary_unary(EXPORT_METHOD)
        while ctx.running():
            code, refused, detail, seconds = export(call, body)
            calls.add(code, seconds, detail=detail)
            rejected += refused
    return Outcome(f"200,000 points ({len(body) / MiB:.1f} MiB) per request: {calls.text()}, rejected {rejected:,}")


def summary_quantiles(ctx: Ctx) -> Outcome:
    body, answers, accepted, slowest = many_quantiles(), Counter[str](), 0, 0.0
    for _ in ctx.paced(0.0, limit=ctx.n(2000, 400)):
        answer = otlp_http(ctx, body, alt_sources()[0])
        answers[answer.status] += 1
        accepted += answer.status == "200" and not answer.rejected()
        slowest = max(slowest, answer.seconds)
    saw = f"20,000 quantiles, 1 point a push, HTTP {_counted(answers)}; {accepted} points accepted, "
    saw += f"slowest {_ms(slowest)}"
    return Outcome(saw, accepted == 0)


def fresh_connections(ctx: Ctx) -> Outcome:
    body, per_request, through, answers = gauges("hostile_fresh", "rate", 10), 10, 0, Counter[str]()
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        answer = otlp_http(ctx, body, alt_sources()[1])  # a fresh connection (and source port) each time
        answers[answer.status] += 1
        if answer.status == "200":
            through += per_request - answer.rejected()
    bound = 100 * (1.0 + 2.0) * 1.1  # 100/s for 1 s, plus 2 s of burst, plus 10%
    saw = f"{through} points through in 1 s over {sum(answers.values())} fresh connections (HTTP {_counted(answers)})"
    return Outcome(saw + "; 100/s + 200 burst allows 300", through <= bound, {"points_through": through})


def over_burst(ctx: Ctx) -> Outcome:
    body, answers, retry_after = gauges("hostile_burst", "rate", 500), Counter[str](), []
    for _ in ctx.paced(0.1, limit=100):
        answer = otlp_http(ctx, body, alt_sources()[2])
        answers[answer.status] += 1
        if answer.status == "429":
            retry_after.append(answer.headers.get("Retry-After", "none"))
    finite = all(_finite(value) for value in retry_after)
    shown = sorted(set(retry_after), key=lambda v: float(v) if _finite(v) else math.inf)
    saw = f"500 points (burst 200), HTTP {_counted(answers)}; Retry-After {', '.join(shown[:5]) or '-'}"
    expected = "429" in answers and finite and not any(s.startswith("5") for s in answers)
    return Outcome(saw, expected)


def _finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def tenant_mismatch(ctx: Ctx) -> Outcome:
    body, codes, pushed, rejected, message = foreign_namespace(), Counter[str](), 0, 0, ""
    metadata = (("authorization", f"Bearer {TOKENS['tenant-a']}"),)
    with ctx.channel("otlp-grpc") as channel:
        call = channel.unary_unary(EXPORT_METHOD)
        for _ in ctx.paced(0.05):
            code, refused, detail, _ = export(call, body, metadata)
            codes[code] += 1
            pushed, rejected, message = pushed + 1, rejected + refused, message or detail
    saw = f"namespace=A, k8s.namespace.name=B with A's token: {_counted(codes)}; partial success rejected "
    return Outcome(saw + f"{rejected} of {pushed} ({message[:70]})", rejected == pushed and set(codes) == {"OK"})


def late_point(ctx: Ctx) -> Outcome:
    gap = min(1.0, ctx.args.seconds / 4)
    base = time.time_ns()
    start = base - 60 * 10**9
    arrived = []
    with ctx.channel("otlp-grpc") as channel:
        call = channel.unary_unary(EXPORT_METHOD)
        for k, (value, offset) in enumerate(((1000, 0), (1010, 2), (1005, 1), (1020, 3))):  # 1005 comes late
            if k:
                time.sleep(gap)
            export(call, late_counter(value, base + int(offset * gap * 1e9), start))
            arrived.append(time.monotonic())
    span = arrived[-1] - arrived[0]
    metadata = {
        "metricQuery": 'sum(hostile_late_requests_total{namespace="late"})',
        "operationOverTime": "rate",
        "window": "30s",
        "targetValue": "1",
    }
    with ctx.channel("scaler") as channel:
        code, _, value, detail = get_metrics(
            pb_grpc.ExternalScalerStub(channel),
            pb.ScaledObjectRef(name="late", namespace="late", scalerMetadata=metadata),
        )
    right, wrong = 20 / span, 1030 / span
    shown = f"rate {value:,.1f}/s" if value is not None else f"{code} {detail[:60]}"
    saw = f"1000, 1010, 1005 (late), 1020 over {span:.2f} s: {shown} "
    saw += f"(right ~{right:,.1f}/s, a reset gives {wrong:,.0f}/s)"
    return Outcome(saw, value is not None and abs(value - right) <= 0.5 * right, {"rate": value, "right": right})


def bad_values(ctx: Ctx) -> Outcome:
    codes, pushed, rejected, message = Counter[str](), 0, 0, ""
    with ctx.channel("otlp-grpc") as channel:
        call = channel.unary_unary(EXPORT_METHOD)
        for _ in ctx.paced(0.1):
            code, refused, detail, _ = export(call, invalid_values())
            codes[code] += 1
            pushed, rejected, message = pushed + 2, rejected + refused, message or detail
    saw = f"negative monotonic delta + NaN quantile: {_counted(codes)}; partial success rejected {rejected} of {pushed}"
    return Outcome(saw + f" ({message[:80]})", rejected == pushed and set(codes) == {"OK"})


def many_streams(ctx: Ctx) -> Outcome:
    count, channels = ctx.n(3000, 1000), ctx.n(30, 10)
    figures = asyncio.run(_streams(ctx.child.address("scaler"), count, channels, ctx.deadline))
    phases = figures.pop("phases")
    firsts = sorted(figures["first_true"])
    p99 = firsts[min(len(firsts) - 1, math.ceil(0.99 * len(firsts)) - 1)] if firsts else math.nan
    others = {code: n for code, n in figures["codes"].items() if code != "CANCELLED"}
    saw = (
        f"{count} streams over {channels} channels: first true {len(firsts)}/{count}, CANCELLED "
        f"{figures['codes'].get('CANCELLED', 0)}, activation p99 {_ms(p99)}"
    )
    if others:
        saw += f", other ends {others}"
    expected = len(firsts) == count and not figures["codes"]
    return Outcome(
        saw, expected, {"first_true": len(firsts), "activation_p99_s": p99, "codes": figures["codes"]}, phases
    )


async def _streams(address: str, count: int, channels: int, deadline: float) -> dict[str, Any]:
    pool = [grpc.aio.insecure_channel(address) for _ in range(channels)]
    first_true: list[float] = []
    codes: Counter[str] = Counter()
    all_true = asyncio.Event()

    async def one(i: int) -> None:
        ref = pb.ScaledObjectRef(name=f"stream-{i:04d}", namespace="good", scalerMetadata=KEEPER_METADATA)
        opened = time.perf_counter()
        call = pb_grpc.ExternalScalerStub(pool[i % channels]).StreamIsActive(ref)
        try:
            async for reply in call:
                if reply.result and opened:
                    first_true.append(time.perf_counter() - opened)
                    opened = 0.0
                    if len(first_true) == count:
                        all_true.set()
            codes["ended OK"] += 1
        except grpc.aio.AioRpcError as exc:
            codes[exc.code().name] += 1
        except asyncio.CancelledError:
            call.cancel()  # ours, at the deadline: not counted

    opening = time.monotonic()
    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_true.wait(), timeout=max(0.5, deadline - time.monotonic()))
    opened = time.monotonic()
    await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    closing = time.monotonic()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in pool:
        await channel.close()
    await asyncio.sleep(0.3)  # the scaler ends the streams after the client has let go of them
    phases = {"opening": (opening, opened), "open": (opened, closing), "closing": (closing, time.monotonic())}
    return {"first_true": first_true, "codes": dict(codes), "phases": phases}


def idle_connections(ctx: Ctx) -> Outcome:
    wanted = ctx.n(3000, 1000)
    budget = (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 300) // len(ctx.child.ports)
    per_port = min(wanted, budget)
    sockets = []
    try:
        for port in ctx.child.ports.values():
            for _ in range(per_port):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                sockets.append(s)
        time.sleep(0.2)
        connected = sum(1 for s in sockets if _connected(s))
        with ctx.channel("scaler") as channel:
            fresh = get_metrics(
                pb_grpc.ExternalScalerStub(channel),
                pb.ScaledObjectRef(name="fresh", namespace="good", scalerMetadata=KEEPER_METADATA),
                timeout=2.0,
            )
        healthz = http_call(ctx.child.ports["http"], "/healthz")
        while ctx.running():
            time.sleep(0.05)
    finally:
        for s in sockets:
            s.close()
    time.sleep(0.2)
    log = ctx.child.log_bytes()
    saw = (
        f"{per_port} x {len(ctx.child.ports)} ports opened ({connected} connected), child nofile {CHILD_NOFILE}; "
        f"fresh GetMetrics {fresh[0]} in {_ms(fresh[1])}, fresh /healthz {healthz.status}; "
        f"stderr log {log / 1024:,.1f} KiB"
    )
    return Outcome(saw, log < MiB, {"stderr_bytes": log, "connected": connected, "fresh_getmetrics": fresh[0]})


def _connected(s: socket.socket) -> bool:
    try:
        s.getpeername()
    except OSError:
        return False
    return True


def debug_without_token(ctx: Ctx) -> Outcome:
    path = "/debug/query?" + urlencode({"metricQuery": 'sum(hostile_keeper_running{pod=~"(a+)+b"})'})
    answers, slowest = Counter[str](), 0.0
    for _ in ctx.paced(0.02, limit=500):
        answer = http_call(ctx.child.ports["http"], path)
        answers[answer.status] += 1
        slowest = max(slowest, answer.seconds)
    return Outcome(
        f"no credentials, regex query: HTTP {_counted(answers)}, slowest {_ms(slowest)}", set(answers) == {"401"}
    )


def no_attack(ctx: Ctx) -> Outcome:
    while ctx.running():
        time.sleep(0.05)
    return Outcome("-")


def _built(payload: Callable[[], bytes]) -> Callable[[Ctx], None]:
    """A setup that builds (and caches) a large payload before the measurement starts."""

    def setup(_: Ctx) -> None:
        payload()

    return setup


@dataclass(frozen=True)
class Attack:
    name: str
    run: Callable[[Ctx], Outcome]
    group: str = "default"
    setup: Callable[[Ctx], None] | None = None


ATTACKS = [
    Attack("baseline (no attack)", no_attack),
    Attack('=~"(a+)+b" over 28 and 2,048 a\'s', regex_backtracking, setup=_push_regex_targets),
    Attack("same regex, --isolate-namespaces", regex_isolated, "isolate", _push_regex_targets),
    Attack("lookahead/lookbehind/backreference", regex_unsupported),
    Attack("podSelector regex of 3.6 MB", huge_pod_selector),
    Attack("100k refused points, 8 KB label sets", refused_label_sets),
    Attack("histogram with 1M buckets, 40 pushes", huge_histogram, setup=_built(million_buckets)),
    Attack("30 concurrent 1 MiB gzip bombs (HTTP)", gzip_bombs, setup=_built(gzip_bomb)),
    Attack("40 x 3.5 MB *FromEnv values and names", huge_metadata),
    Attack("200k-point requests back to back", big_requests, setup=_built(flood)),
    Attack("summary with 20,000 quantiles", summary_quantiles, "rate"),
    Attack("fresh connections, --max-push-rate 100", fresh_connections, "rate"),
    Attack("HTTP push larger than the burst", over_burst, "rate"),
    Attack("token of ns A writes k8s ns B", tenant_mismatch, "auth"),
    Attack("late counter point, then rate", late_point),
    Attack("negative monotonic delta, NaN quantile", bad_values),
    Attack("3,000 StreamIsActive at once", many_streams),
    Attack("3,000 idle TCP connections per port", idle_connections, "nofile"),
    Attack("/debug/query without credentials", debug_without_token, "auth"),
]


# -- one row ------------------------------------------------------------------------------------------------


@dataclass
class Row:
    number: int
    attack: str
    group: str
    calls: int = 0
    errors: int = 0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    p50_ratio: float = math.nan
    p99_ratio: float = math.nan
    rss_start_mib: float = math.nan
    rss_peak_mib: float = math.nan
    rss_final_mib: float = math.nan
    saw: str = ""
    expected: bool | None = None
    status: str = "ok"  # or "scaler died (exit N)", "attack error: ...", "scaler did not start: ..."
    met: bool = False
    seconds: float = 0.0
    stderr_bytes: int = 0
    good_errors: dict[str, int] = field(default_factory=dict)
    first_error: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def group_flags(group: str, workdir: Path) -> tuple[list[str], int | None, str | None]:
    """(flags, the child's open-file limit, the keeper's token) of a group of rows."""
    if group == "isolate":
        return ["--isolate-namespaces"], None, None
    if group == "rate":
        return ["--max-datapoints-per-request", "1000", "--max-push-rate", "100"], None, None
    if group == "auth":
        tokens, ops = workdir / "otlp-tokens", workdir / "ops-tokens"
        tokens.write_text(f"{TOKENS['keeper']} good\n{TOKENS['tenant-a']} tenant-a\n")
        ops.write_text(f"{OPS_TOKEN}\n")
        return ["--otlp-token-file", str(tokens), "--ops-token-file", str(ops)], None, TOKENS["keeper"]
    if group == "nofile":
        return [], CHILD_NOFILE, None
    return [], None, None


def run_row(number: int, attack: Attack, args: argparse.Namespace, good: GoodClientProcess, workdir: Path) -> Row:
    row = Row(number, attack.name, attack.group)
    flags, nofile, token = group_flags(attack.group, workdir)
    started = time.monotonic()
    try:
        log = workdir / f"row-{number:02d}.log"
        child = ScalerProcess(*COMMON_FLAGS, *flags, log=log, preexec_fn=_nofile(nofile), start_timeout=30)
        child.start()
    except RuntimeError as exc:
        row.status = f"scaler did not start: {str(exc)[:200]}"
        return row
    try:
        why = good.call("connect", child.address("otlp-grpc"), child.address("scaler"), token)
        if why:
            row.status = f"good client not answered before the attack: {why}"
        sampler = RssSampler(child.pid)
        ctx = Ctx(child, args)
        if attack.setup:
            attack.setup(ctx)
        good.call("begin")
        ctx.deadline = time.monotonic() + args.seconds
        outcome = _bounded(attack.run, ctx, hard_cap=4 * args.seconds + 30)
        time.sleep(max(0.0, ctx.deadline - time.monotonic()))  # every row measures at least --seconds
        figures = good.call("end")
        if child.returncode is not None:
            row.status = f"scaler died (exit {child.returncode})"
        elif outcome.saw.startswith(("attack error", "attack overran")):
            row.status = outcome.saw.split(":")[0]
        time.sleep(args.settle)
        row.rss_start_mib, row.rss_peak_mib, row.rss_final_mib = sampler.finish()
        row.saw, row.expected, row.figures = outcome.saw, outcome.expected, outcome.figures
        _fill_latency(row, figures)
        row.saw += _slowest_by_phase(outcome.phases, figures)
    except Exception as exc:  # the run goes on: the row says what broke
        row.status = f"row error: {exc!r}"[:200]
    finally:
        row.stderr_bytes = child.log_bytes()
        child.stop()
    row.seconds = time.monotonic() - started
    return row


def _nofile(limit: int | None) -> Callable[[], None] | None:
    """What lowers the scaler's open-file limit to `limit` before it starts, if one is given."""
    if limit is None:
        return None
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def _bounded(run: Callable[[Ctx], Outcome], ctx: Ctx, hard_cap: float) -> Outcome:
    """The attack in a thread; an exception or an overrun is the row's outcome, never the run's end."""
    result: list[Outcome] = []

    def target() -> None:
        try:
            result.append(run(ctx))
        except Exception as exc:
            result.append(Outcome(f"attack error: {exc!r}"[:300], False))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(hard_cap)
    if thread.is_alive():
        ctx.child.stop()  # closes its sockets, which ends the attacker's calls
        thread.join(10)
        return Outcome(f"attack overran {hard_cap:g} s: scaler stopped", False)
    return result[0]


def _fill_latency(row: Row, figures: dict[str, Any]) -> None:
    latencies = figures["latencies"]
    row.calls = len(latencies)
    row.p50_ms, row.p99_ms = quantile(latencies, 0.5) * 1e3, quantile(latencies, 0.99) * 1e3
    row.good_errors, row.first_error = figures["errors"], figures["first_error"]
    row.errors = sum(row.good_errors.values())


def _slowest_by_phase(phases: dict[str, tuple[float, float]], figures: dict[str, Any]) -> str:
    """'; slowest good call while <phase>: X ms' for each phase of the attack: the calls in progress in it."""
    text = ""
    for name, (start, end) in phases.items():
        calls = zip(figures["called_at"], figures["latencies"], strict=True)
        during = [latency for at, latency in calls if at <= end and at + latency >= start]
        text += f"; slowest good call while {name}: {_ms(max(during)) if during else 'none'}"
    return text


def judge(row: Row, baseline: Row) -> None:
    row.p50_ratio = row.p50_ms / baseline.p50_ms if baseline.p50_ms > 0 else math.nan
    row.p99_ratio = row.p99_ms / baseline.p99_ms if baseline.p99_ms > 0 else math.nan
    row.met = (
        row.p99_ms < TARGET_P99_MS and row.rss_peak_mib < TARGET_RSS_MIB and row.errors == 0 and row.status == "ok"
    )


# -- report ---------------------------------------------------------------------------------------------------


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print(
        f"hostile: {len(rows) - 1} attacks, each on a fresh scaler ({' '.join(COMMON_FLAGS[:6])}) for >= "
        f"{args.seconds:g} s; good client: keeper pushed every {PUSH_EVERY:g} s over OTLP/gRPC, GetMetrics every "
        f"{POLL_EVERY * 1e3:.0f} ms; {os.cpu_count()} CPUs"
    )
    header = (
        f"{'#':>2} {'attack':<40} {'n':>4} {'err':>4} {'p50 ms':>8} {'p99 ms':>8} {'p50 x':>7} {'p99 x':>7} "
        f"{'RSS pk':>7} {'RSS end':>7} {'verdict':<7} {'exp':<3}  attacker saw"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        expected = {None: "-", True: "yes", False: "NO"}[row.expected]
        print(
            f"{row.number:>2} {row.attack:<40} {row.calls:>4} {row.errors:>4} {row.p50_ms:>8.2f} {row.p99_ms:>8.2f} "
            f"{row.p50_ratio:>6.1f}x {row.p99_ratio:>6.1f}x {row.rss_peak_mib:>7.1f} {row.rss_final_mib:>7.1f} "
            f"{'MET' if row.met else 'NOT MET':<7} {expected:<3}  {row.saw}"
        )
        if row.status != "ok":
            print(f"   ^ {row.status}")
        if row.first_error:
            print(f"   ^ good client's first error: {row.first_error}")
    print(
        "n, err, p50, p99: the good client's GetMetrics calls during the attack (failed calls timed too; errors "
        "include its keeper pushes); x: against row 0. RSS in MiB: peak during the row, end after "
        f"{args.settle:g} s of quiet. exp: whether the attacker saw what the review expects (- where it named "
        "nothing). A row is MET with p99 under the target, peak RSS under the target, no good-client errors and "
        "the scaler alive."
    )


def summary(rows: list[Row]) -> str:
    baseline = rows[0]
    worst = max(rows, key=lambda r: r.p99_ms if not math.isnan(r.p99_ms) else math.inf)
    fattest = max(rows, key=lambda r: r.rss_peak_mib if not math.isnan(r.rss_peak_mib) else math.inf)
    met = sum(r.met for r in rows)
    errors = sum(r.errors for r in rows)
    not_ok = sum(r.status != "ok" for r in rows)
    return (
        f"SUMMARY hostile: {met} of {len(rows)} rows MET; worst good-client p99 {worst.p99_ms:,.1f} ms (row "
        f"{worst.number}), peak RSS {fattest.rss_peak_mib:,.1f} MiB (row {fattest.number}), good-client errors "
        f"{errors}, rows not run cleanly {not_ok}; baseline p99 {baseline.p99_ms:,.2f} ms; target p99 < "
        f"{TARGET_P99_MS:g} ms and peak RSS < {TARGET_RSS_MIB:g} MiB in every row: "
        f"{'MET' if met == len(rows) else 'NOT MET'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds each attack runs, at least [5]")
    parser.add_argument("--settle", type=float, default=1.0, help="quiet seconds before the final RSS [1]")
    parser.add_argument("--only", type=lambda s: [int(n) for n in s.split(",")], help="row numbers to run (0 always)")
    parser.add_argument("--smoke", action="store_true", help="every attack for about 1 s, fewer repetitions")
    parser.add_argument("--json", type=Path, help="write the rows to this file")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.settle = 1.0, 0.3
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the idle-connections row holds 12,000 sockets
    resource.setrlimit(resource.RLIMIT_NOFILE, (65536 if hard == resource.RLIM_INFINITY else min(hard, 65536), hard))
    wanted = [0, *(args.only or range(1, len(ATTACKS)))]
    good = GoodClientProcess()
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-hostile-") as workdir:
            for number in sorted(set(wanted)):
                rows.append(run_row(number, ATTACKS[number], args, good, Path(workdir)))
                if good.broken or not good.proc.is_alive():
                    good.close()
                    good = GoodClientProcess()
                print(
                    f"  row {number} done in {rows[-1].seconds:.1f} s: {rows[-1].status}", file=sys.stderr, flush=True
                )
    finally:
        good.close()
    for row in rows:
        judge(row, rows[0])
    print_table(rows, args)
    line = summary(rows)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"config": vars(args) | {"json": str(args.json)}, "rows": [asdict(r) for r in rows], "summary": line},
                indent=2,
                default=str,
            )
        )
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
