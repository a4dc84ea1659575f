"""Streams benchmark: what thousands of open StreamIsActive streams cost everyone else's calls.

KEDA keeps one StreamIsActive open per push-scaler trigger. For each stream count, a fresh scaler
(`python -m scaler serve`, its own process) gets a keeper gauge pushed every 0.5 s (its value flips,
so every push changes the data); one process opens the streams at once and holds them, and another,
the good client, times a GetMetrics every 50 ms. The good client's latency is reported over the
opening (the first seconds after the streams open) and in steady state, against the same client with
no streams in the same run.

    python load/bench_streams.py                 # 0, 1,000 and 3,000 streams, 20 s each (about 1.5 min)
    python load/bench_streams.py --smoke         # 0 and 200 streams, a few seconds each
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from scaler_process import ScalerProcess

from scaler.externalscaler import externalscaler_pb2 as pb
from scaler.externalscaler import externalscaler_pb2_grpc as pb_grpc

EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
METADATA = {"metricQuery": 'sum(keeper_running{namespace="good", deployment="keeper"})', "targetValue": "4"}
CHANNELS = 30  # the stream opener's connections
PUSH_EVERY, CALL_EVERY = 0.5, 0.05
OPENING = 6.0  # seconds after the streams open that count as the opening


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


async def good_client(scaler: str, otlp: str, seconds: float, streams_at: float) -> dict[str, list[float]]:
    """Push the keeper and time GetMetrics; latencies split at the opening's end."""
    push_channel = grpc.aio.insecure_channel(otlp)
    export = push_channel.unary_unary(
        EXPORT, request_serializer=ms.ExportMetricsServiceRequest.SerializeToString, response_deserializer=None
    )
    stop = asyncio.Event()

    async def pusher() -> None:
        flip = 0
        while not stop.is_set():
            await export(keeper_request(5.0 + flip), timeout=10)
            flip ^= 1
            await asyncio.sleep(PUSH_EVERY)

    await export(keeper_request(5.0), timeout=10)  # data first: a scaler that has received nothing answers an error
    pushing = asyncio.create_task(pusher())
    channel = grpc.aio.insecure_channel(scaler)
    stub = pb_grpc.ExternalScalerStub(channel)
    request = pb.GetMetricsRequest(
        scaledObjectRef=pb.ScaledObjectRef(name="good", namespace="good", scalerMetadata=METADATA)
    )
    out: dict[str, list[float]] = {"opening": [], "steady": [], "errors": []}
    started = time.monotonic()
    while (now := time.monotonic()) - started < seconds:
        try:
            await stub.GetMetrics(request, timeout=10)
        except grpc.aio.AioRpcError:
            out["errors"].append(now - started)
        took = time.monotonic() - now
        out["opening" if now - started < streams_at + OPENING else "steady"].append(took)
        await asyncio.sleep(CALL_EVERY)
    stop.set()
    await pushing
    await channel.close()
    await push_channel.close()
    return out


@dataclass
class Row:
    streams: int
    opening: list[float]
    steady: list[float]
    errors: int
    messages: int


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def run_row(streams: int, seconds: float) -> Row:
    script = Path(__file__)
    with ScalerProcess("--warmup", "0s") as scaler:
        address, otlp = scaler.address("scaler"), scaler.address("otlp-grpc")
        lead = 1.0  # the good client runs alone this long before the streams open
        good = subprocess.Popen(
            [sys.executable, str(script), "--role", "good", address, otlp, str(seconds), str(lead)],
            stdout=subprocess.PIPE,
        )
        opener = None
        if streams:
            time.sleep(lead)
            opener = subprocess.Popen(
                [sys.executable, str(script), "--role", "streams", address, str(streams), str(seconds - lead)],
                stdout=subprocess.PIPE,
            )
        good_out, _ = good.communicate(timeout=seconds + 60)
        held = {"messages": 0}
        if opener is not None:
            held = json.loads(opener.communicate(timeout=seconds + 60)[0])
        figures = json.loads(good_out)
    return Row(streams, figures["opening"], figures["steady"], len(figures["errors"]), held["messages"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="0 and 200 streams, a few seconds each")
    parser.add_argument("--streams", default="1000,3000", help="stream counts after the 0-stream baseline")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per row")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.role == "good":
        scaler, otlp, seconds, lead = rest
        print(json.dumps(asyncio.run(good_client(scaler, otlp, float(seconds), float(lead)))))
        return
    if args.role == "streams":
        address, count, seconds = rest
        print(json.dumps(asyncio.run(hold_streams(address, int(count), float(seconds)))))
        return
    counts = [200] if args.smoke else [int(n) for n in args.streams.split(",")]
    seconds = 8.0 if args.smoke else args.seconds
    rows = [run_row(n, seconds) for n in [0, *counts]]
    base = quantile(rows[0].steady + rows[0].opening, 0.99)
    print(
        f"streams: keeper pushed every {PUSH_EVERY:g} s, GetMetrics every {CALL_EVERY * 1000:g} ms, {seconds:g} s a row"
    )
    columns = ("streams", "calls", "err", "open p99 ms", "open max", "steady p50", "steady p99", "p99 x", "messages")
    widths = (8, 6, 4, 12, 9, 11, 11, 7, 9)
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        steady99 = quantile(row.steady, 0.99)
        print(
            f"{row.streams:>8,} {len(row.opening) + len(row.steady):>6} {row.errors:>4} "
            f"{quantile(row.opening, 0.99) * 1000:>12.1f} {max(row.opening, default=math.nan) * 1000:>9.1f} "
            f"{quantile(row.steady, 0.5) * 1000:>11.1f} {steady99 * 1000:>11.1f} {steady99 / base:>6.1f}x "
            f"{row.messages:>9,}"
        )
    print("open: the first 6 s after the streams open; x: steady p99 against the 0-stream row's p99 (same run)")
    worst = rows[-1]
    print(
        f"SUMMARY streams: {worst.streams:,} streams: steady p99 {quantile(worst.steady, 0.99) * 1000:.1f} ms "
        f"({quantile(worst.steady, 0.99) / base:.1f}x the no-stream p99 of {base * 1000:.1f} ms), opening max "
        f"{max(worst.opening, default=math.nan) * 1000:.1f} ms, {worst.errors} failed calls"
    )


if __name__ == "__main__":
    main()
