"""Streams benchmark: what thousands of open StreamIsActive streams cost everyone else's calls.

KEDA keeps one StreamIsActive open per push-scaler trigger. For each stream count, a fresh scaler
(`python -m scaler serve`, its own process) gets a keeper gauge pushed every 0.5 s (its value flips,
so every push changes the data); one process opens the streams at once and holds them, and another,
the good client, times a GetMetrics every 50 ms. The good client's latency is reported over the
opening (the first seconds after the streams open), in steady state and while the streams close (the
opener cancels them all at once, as a restarting KEDA operator does), against the same client with no
streams in the same run. The last row is the floor: the same burst against a bare grpc.aio
ExternalScaler (one `true` per stream, a constant GetMetrics) with the scaler port's options and
registered methods, in its own process.

    python load/bench_streams.py                 # 0, 1,000 and 3,000 streams, then the bare server (about 2 min)
    python load/bench_streams.py --smoke         # 0 and 200 streams, a few seconds each
    python load/bench_streams.py --same-value    # the keeper pushed with one value: pushes that change no
                                                 # stream's answer, as most of a fleet's pushes are for
                                                 # any one ScaledObject (each reads its own deployment)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from scaler_process import ScalerProcess, cpu_seconds

from scaler.externalscaler import externalscaler_pb2 as pb
from scaler.externalscaler import externalscaler_pb2_grpc as pb_grpc
from scaler.listeners import add_methods, stream_options

EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
METADATA = {"metricQuery": 'sum(keeper_running{namespace="good", deployment="keeper"})', "targetValue": "4"}
CHANNELS = 30  # the stream opener's connections
PUSH_EVERY, CALL_EVERY = 0.5, 0.05
OPENING, CLOSING = 6.0, 3.0  # seconds after the streams open; the last seconds of a row, from their cancelling
SMOKE_PHASES = (2.0, 2.0)


def keeper_request(value: float) -> ms.ExportMetricsServiceRequest:
    labels = [
        common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
        for k, v in (("namespace", "good"), ("deployment", "keeper"), ("pod", "keeper-0"))
    ]
    point = metrics_pb2.NumberDataPoint(as_double=value, time_unix_nano=time.time_ns(), attributes=labels)
    metric = metrics_pb2.Metric(name="keeper_running", gauge=metrics_pb2.Gauge(data_points=[point]))
    scope = metrics_pb2.ScopeMetrics(metrics=[metric])
    return ms.ExportMetricsServiceRequest(resource_metrics=[metrics_pb2.ResourceMetrics(scope_metrics=[scope])])


async def hold_streams(address: str, count: int, seconds: float) -> dict[str, int]:
    """Open `count` streams at once, read them for `seconds`, then cancel them."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(CHANNELS)]
    figures = {"messages": 0, "errors": 0}

    async def one(i: int) -> None:
        ref = pb.ScaledObjectRef(name=f"stream-{i:05d}", namespace="good", scalerMetadata=METADATA)
        try:
            async for _ in pb_grpc.ExternalScalerStub(channels[i % CHANNELS]).StreamIsActive(ref):
                figures["messages"] += 1
        except grpc.aio.AioRpcError:
            figures["errors"] += 1

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return figures


async def good_client(
    scaler: str,
    otlp: str,
    seconds: float,
    streams_at: float,
    phases: tuple[float, float],
    push_every: float,
    flips: int = 1,
) -> dict[str, list[float]]:
    """Push the keeper (unless otlp is "-") and time GetMetrics; latencies split by the phases' (opening, closing)."""
    opening, closing = phases
    push_channel = grpc.aio.insecure_channel(otlp if otlp != "-" else scaler)
    export = push_channel.unary_unary(
        EXPORT, request_serializer=ms.ExportMetricsServiceRequest.SerializeToString, response_deserializer=None
    )
    stop = asyncio.Event()

    async def pusher() -> None:
        flip = 0
        while not stop.is_set():
            await export(keeper_request(5.0 + flip), timeout=10)
            flip ^= flips
            await asyncio.sleep(push_every)

    pushing = None
    if otlp != "-":  # the bare server takes no pushes
        await export(keeper_request(5.0), timeout=10)  # data first: a scaler that has received nothing answers an error
        pushing = asyncio.create_task(pusher())
    channel = grpc.aio.insecure_channel(scaler)
    stub = pb_grpc.ExternalScalerStub(channel)
    request = pb.GetMetricsRequest(
        scaledObjectRef=pb.ScaledObjectRef(name="good", namespace="good", scalerMetadata=METADATA)
    )
    out: dict[str, list[float]] = {"opening": [], "steady": [], "closing": [], "errors": []}
    started = time.monotonic()
    while (now := time.monotonic()) - started < seconds:
        try:
            await stub.GetMetrics(request, timeout=10)
        except grpc.aio.AioRpcError:
            out["errors"].append(now - started)
        took = time.monotonic() - now
        since = now - started
        phase = "opening" if since < streams_at + opening else "steady" if since < seconds - closing else "closing"
        out[phase].append(took)
        await asyncio.sleep(CALL_EVERY)
    stop.set()
    if pushing is not None:
        await pushing
    await channel.close()
    await push_channel.close()
    return out


class BareScaler(pb_grpc.ExternalScalerServicer):
    """The least an ExternalScaler can do: what grpc.aio itself costs."""

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: Any) -> pb.GetMetricsResponse:  # noqa: N802
        return pb.GetMetricsResponse(metricValues=[pb.MetricValue(metricName="bare", metricValueFloat=5.0)])

    async def StreamIsActive(  # noqa: N802
        self, request: pb.ScaledObjectRef, context: Any
    ) -> AsyncIterator[pb.IsActiveResponse]:
        yield pb.IsActiveResponse(result=True)
        await asyncio.Event().wait()


async def bare_server() -> None:
    """Serve BareScaler on 127.0.0.1 with the scaler port's stream options; print the port, run until killed."""
    server = grpc.aio.server(options=stream_options(10_000), maximum_concurrent_rpcs=10_000)
    bare = BareScaler()
    handlers = {
        "GetMetrics": grpc.unary_unary_rpc_method_handler(
            bare.GetMetrics, pb.GetMetricsRequest.FromString, pb.GetMetricsResponse.SerializeToString
        ),
        "StreamIsActive": grpc.unary_stream_rpc_method_handler(
            bare.StreamIsActive, pb.ScaledObjectRef.FromString, pb.IsActiveResponse.SerializeToString
        ),
    }
    add_methods(server, pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name, handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


@dataclass
class Row:
    streams: int
    opening: list[float]
    steady: list[float]
    closing: list[float]
    errors: int
    messages: int
    cpu: float  # the server's CPU seconds over the row
    server: str = "scaler"  # or "grpc.aio": the bare server


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


@dataclass(frozen=True)
class Timing:
    seconds: float  # a row
    phases: tuple[float, float]  # the opening's and the closing's seconds
    push_every: float  # between keeper pushes: each changes the data, so each is a re-check round
    same_value: bool = False  # the keeper's value never changes: pushes that change no stream's answer


def run_row(streams: int, timing: Timing, bare: bool = False) -> Row:
    if not bare:
        with ScalerProcess("--warmup", "0s") as scaler:
            return _measure(streams, timing, scaler.address("scaler"), scaler.address("otlp-grpc"), scaler.pid)
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__)), "--role", "bare"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        row = _measure(streams, timing, f"127.0.0.1:{port}", "-", server.pid)
    finally:
        server.kill()
        server.wait()
    row.server = "grpc.aio"
    return row


def _measure(streams: int, timing: Timing, address: str, otlp: str, pid: int) -> Row:
    """The good client for a row against `address`; streams open after `lead` and close at the closing phase."""
    script, lead, seconds = str(Path(__file__)), 1.0, timing.seconds  # the good client runs alone for `lead`
    cpu = cpu_seconds(pid)
    good = subprocess.Popen(
        [sys.executable, script, "--role", "good", address, otlp, str(seconds), str(lead), *map(str, timing.phases)]
        + [str(timing.push_every), str(int(not timing.same_value))],
        stdout=subprocess.PIPE,
    )
    held = {"messages": 0}
    if streams:
        time.sleep(lead)
        hold = str(seconds - lead - timing.phases[1])
        opener = subprocess.Popen(
            [sys.executable, script, "--role", "streams", address, str(streams), hold], stdout=subprocess.PIPE
        )
        held = json.loads(opener.communicate(timeout=seconds + 60)[0])
    figures = json.loads(good.communicate(timeout=seconds + 60)[0])
    cpu = cpu_seconds(pid) - cpu
    phases_seen = (figures["opening"], figures["steady"], figures["closing"])
    return Row(streams, *phases_seen, len(figures["errors"]), held["messages"], cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="0 and 200 streams, a few seconds each")
    parser.add_argument("--streams", default="1000,3000", help="stream counts after the 0-stream baseline")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per row")
    parser.add_argument("--push-every", type=float, default=PUSH_EVERY, help="seconds between keeper pushes [0.5]")
    parser.add_argument("--same-value", action="store_true", help="push the keeper with one value throughout")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.role == "good":
        scaler, otlp, seconds, lead, opening, closing, push_every, flips = rest
        phases = (float(opening), float(closing))
        figures = good_client(scaler, otlp, float(seconds), float(lead), phases, float(push_every), int(flips))
        print(json.dumps(asyncio.run(figures)))
        return
    if args.role == "bare":
        asyncio.run(bare_server())
        return
    if args.role == "streams":
        address, count, seconds = rest
        print(json.dumps(asyncio.run(hold_streams(address, int(count), float(seconds)))))
        return
    counts = [200] if args.smoke else [int(n) for n in args.streams.split(",")]
    seconds = 8.0 if args.smoke else args.seconds
    phases = SMOKE_PHASES if args.smoke else (OPENING, CLOSING)
    timing = Timing(seconds, phases, args.push_every, args.same_value)
    rows = [run_row(n, timing) for n in [0, *counts]]
    rows.append(run_row(counts[-1], timing, bare=True))
    value = " (one value)" if args.same_value else ""
    base = quantile(rows[0].steady + rows[0].opening, 0.99)
    print(
        f"streams: keeper pushed every {args.push_every:g} s{value}, GetMetrics every {CALL_EVERY * 1000:g} ms, "
        f"{seconds:g} s a row"
    )
    columns = (
        "server",
        "streams",
        "calls",
        "err",
        "open max ms",
        "steady p50",
        "steady p99",
        "p99 x",
        "close max",
        "CPU s",
    )
    widths = (8, 8, 6, 4, 12, 11, 11, 7, 10, 6)
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)) + "  messages")
    for row in rows:
        steady99 = quantile(row.steady, 0.99)
        print(
            f"{row.server:>8} {row.streams:>8,} {len(row.opening) + len(row.steady) + len(row.closing):>6} "
            f"{row.errors:>4} {max(row.opening, default=math.nan) * 1000:>12.1f} "
            f"{quantile(row.steady, 0.5) * 1000:>11.1f} {steady99 * 1000:>11.1f} {steady99 / base:>6.1f}x "
            f"{max(row.closing, default=math.nan) * 1000:>10.1f} {row.cpu:>6.2f}  {row.messages:,}"
        )
    print(
        f"open: the first {phases[0]:g} s after the streams open; close: the last {phases[1]:g} s, from their "
        "cancelling; CPU: the server's over the row; x: steady p99 against the 0-stream row's p99 (same run)"
    )
    ours, floor = rows[-2], rows[-1]
    print(
        f"SUMMARY streams: {ours.streams:,} streams: steady p99 {quantile(ours.steady, 0.99) * 1000:.1f} ms "
        f"({quantile(ours.steady, 0.99) / base:.1f}x the no-stream p99 of {base * 1000:.1f} ms), opening max "
        f"{max(ours.opening, default=math.nan) * 1000:.1f} ms (a bare grpc.aio server "
        f"{max(floor.opening, default=math.nan) * 1000:.1f} ms), closing max "
        f"{max(ours.closing, default=math.nan) * 1000:.1f} ms (bare "
        f"{max(floor.closing, default=math.nan) * 1000:.1f} ms), {ours.errors} failed calls"
    )


if __name__ == "__main__":
    main()
