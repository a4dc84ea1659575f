"""Live fuzzing: mutated and random OTLP payloads over gRPC and HTTP, and malformed ScaledObjectRefs.

A canary series is pushed first with the real OTel SDK exporter. Then every payload must get an
answer (OK, OTLP partial success, or a proper error: INVALID_ARGUMENT, RESOURCE_EXHAUSTED,
UNAUTHENTICATED / 400, 401, 413, 415, 429; never UNKNOWN, INTERNAL or 500, never a hang). Afterwards
health still says SERVING, a valid push still works and the canary's value is unchanged. The counts
by outcome are printed (`pytest -s`); FUZZ_SEED picks another seed.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import os
import random
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
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

from scaler.app import Scaler, start
from scaler.policy_spec import POLICY_KEYS
from scaler.sim.otlp_push import PodMetrics, push
from scaler.triggers import QUERY_KEYS
from tests.integration.conftest import FAST
from tests.keda_contract import KedaClient

SEED = int(os.environ.get("FUZZ_SEED", "20261124"))
ROUNDS = {"otlp-grpc": 300, "otlp-http": 300, "keda": 300}
IN_FLIGHT = 8
ANSWER_WITHIN = 5.0  # seconds: anything slower counts as a hang
EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
KEDA = "/externalscaler.ExternalScaler/"

TOKEN_CANARY = "canary-token-0123456789abcdef"
TOKEN_ANY = "fuzz-token-any-namespace-0123456789"
TOKEN_FUZZ = "fuzz-token-bound-to-fuzz-ns-0123456789"
CANARY_METADATA = {"metricQuery": 'sum(vllm:num_requests_running{namespace="canary"})', "targetValue": "1"}

GOOD_GRPC = {"OK", "OK partial", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "UNAUTHENTICATED"}
GOOD_KEDA = {"OK", "INVALID_ARGUMENT", "UNAVAILABLE", "stream open", "UNIMPLEMENTED"}
GOOD_HTTP = {"200", "200 partial", "400", "401", "413", "415", "429"}


@pytest.fixture
async def scaler(tmp_path: Path) -> AsyncIterator[Scaler]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN_CANARY}\n{TOKEN_ANY}\n{TOKEN_FUZZ} fuzz-ns\n")
    settings = replace(
        FAST,
        retention=120.0,
        stale_after=60.0,  # the canary stays fresh for the whole run
        otlp_token_file=str(tokens),
        max_request_bytes=256 * 1024,
        max_datapoints_per_request=1000,
        max_push_rate=5000.0,
    )
    running = await start(settings)
    yield running
    await running.stop()


# -- payloads ------------------------------------------------------------------------------------------


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _seed_request(pod: str, namespace: str = "fuzz-ns") -> ExportMetricsServiceRequest:
    """A small request with every metric type, as a collector would batch one vLLM pod."""
    labels = [_kv("namespace", namespace), _kv("pod", pod), _kv("engine", "0")]
    cumulative = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    metrics = [
        Metric(
            name="vllm:num_requests_running", gauge=Gauge(data_points=[NumberDataPoint(attributes=labels, as_double=3)])
        ),
        Metric(
            name="vllm:generation_tokens_total",
            sum=Sum(
                data_points=[NumberDataPoint(attributes=labels, as_int=1200, start_time_unix_nano=1)],
                aggregation_temporality=cumulative,
                is_monotonic=True,
            ),
        ),
        Metric(
            name="vllm:time_to_first_token_seconds",
            histogram=Histogram(
                data_points=[
                    HistogramDataPoint(
                        attributes=labels, count=6, sum=1.5, bucket_counts=[1, 2, 3], explicit_bounds=[0.1, 0.5]
                    )
                ],
                aggregation_temporality=cumulative,
            ),
        ),
        Metric(
            name="rpc.duration",
            exponential_histogram=ExponentialHistogram(
                data_points=[ExponentialHistogramDataPoint(attributes=labels, count=4, sum=2.0, scale=3)],
                aggregation_temporality=cumulative,
            ),
        ),
        Metric(
            name="latency_summary",
            summary=Summary(
                data_points=[
                    SummaryDataPoint(
                        attributes=labels,
                        count=5,
                        sum=2.5,
                        quantile_values=[SummaryDataPoint.ValueAtQuantile(quantile=0.9, value=0.7)],
                    )
                ]
            ),
        ),
    ]
    resource = Resource(attributes=[_kv("k8s.pod.name", pod), _kv("k8s.namespace.name", namespace)])
    return ExportMetricsServiceRequest(
        resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=[ScopeMetrics(metrics=metrics)])]
    )


def _gauge_request(pod: str, points: list[NumberDataPoint], resource: list[KeyValue] | None = None) -> bytes:
    metric = Metric(name="vllm:num_requests_running", gauge=Gauge(data_points=points))
    attributes = [_kv("k8s.pod.name", pod), _kv("k8s.namespace.name", "fuzz-ns"), *(resource or [])]
    rm = ResourceMetrics(resource=Resource(attributes=attributes), scope_metrics=[ScopeMetrics(metrics=[metric])])
    return ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()


def _deeply_nested(depth: int) -> bytes:
    """An attribute value nested `depth` kvlists deep, written by hand (the protobuf runtime refuses to)."""
    value = b"\x0a\x01x"  # AnyValue{string_value: "x"}
    for _ in range(depth):
        key_value = b"\x0a\x01k" + b"\x12" + _varint(len(value)) + value  # KeyValue{key, value}
        kvlist = b"\x0a" + _varint(len(key_value)) + key_value  # KeyValueList{values}
        value = b"\x32" + _varint(len(kvlist)) + kvlist  # AnyValue{kvlist_value}
    attribute = b"\x0a\x04deep\x12" + _varint(len(value)) + value
    resource = b"\x0a" + _varint(len(attribute)) + attribute  # Resource{attributes}
    resource_metrics = b"\x0a" + _varint(len(resource)) + resource  # ResourceMetrics{resource}
    return b"\x0a" + _varint(len(resource_metrics)) + resource_metrics


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _crafted(rng: random.Random) -> tuple[str, bytes]:
    """Well-formed protobuf with hostile content: sizes, counts, values and layouts at and over the limits."""
    pod = f"crafted-{rng.randrange(50)}"
    kind = rng.choice(
        [
            "many attributes",
            "long label",
            "too many points",
            "extreme values",
            "bad histogram",
            "deep nesting",
            "many resources",
            "empty",
            "no value flags",
            "huge varint length",
        ]
    )
    if kind == "many attributes":
        extra = [_kv(f"a{i}", "v") for i in range(rng.choice([65, 500, 3000]))]
        return kind, _gauge_request(pod, [NumberDataPoint(as_double=1.0, attributes=extra)])
    if kind == "long label":
        return kind, _gauge_request(pod, [NumberDataPoint(as_double=1.0, attributes=[_kv("k" * 3000, "v")])])
    if kind == "too many points":
        return kind, _gauge_request(
            pod, [NumberDataPoint(as_double=i, attributes=[_kv("i", str(i))]) for i in range(1001)]
        )
    if kind == "extreme values":
        values = [1e308, -1e308, math.nan, math.inf, -math.inf, 5e-324, 9.3e15, 1.7976931348623157e308]
        points = [NumberDataPoint(as_double=rng.choice(values), attributes=[_kv("engine", str(i))]) for i in range(4)]
        points.append(NumberDataPoint(as_int=rng.choice([2**63 - 1, -(2**63)]), attributes=[_kv("engine", "i")]))
        return kind, _gauge_request(pod, points)
    if kind == "bad histogram":
        bounds = rng.choice([[1.0, 0.5], [math.nan], [math.inf, 1.0], [0.1, 0.2]])
        point = HistogramDataPoint(count=2**64 - 1, sum=rng.choice([math.nan, math.inf, 1e308]), explicit_bounds=bounds)
        point.bucket_counts.extend([2**64 - 1] * rng.choice([0, 1, len(bounds) + 1, 9]))
        metric = Metric(name="vllm:inter_token_latency_seconds", histogram=Histogram(data_points=[point]))
        resource = Resource(attributes=[_kv("k8s.pod.name", pod), _kv("k8s.namespace.name", "fuzz-ns")])
        rm = ResourceMetrics(resource=resource, scope_metrics=[ScopeMetrics(metrics=[metric])])
        return kind, ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()
    if kind == "deep nesting":
        return kind, _deeply_nested(rng.choice([50, 99, 150, 400]))
    if kind == "many resources":
        request = ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics() for _ in range(2000)])
        return kind, request.SerializeToString()
    if kind == "empty":
        return kind, b""
    if kind == "no value flags":
        points = [NumberDataPoint(flags=1, attributes=[_kv("engine", str(i))]) for i in range(3)]
        return kind, _gauge_request(pod, points)
    return kind, b"\x0a\xff\xff\xff\xff\x0f" + bytes(16)  # a length prefix of 4 GiB over 16 bytes


def _mutate(rng: random.Random, body: bytes) -> tuple[str, bytes]:
    kind = rng.choice(["bit flips", "truncation", "random bytes", "splice", "duplication", "crafted"])
    data = bytearray(body)
    if kind == "bit flips" and data:
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "truncation":
        del data[rng.randrange(len(data) + 1) :]
    elif kind == "random bytes":
        data = bytearray(rng.randbytes(rng.choice([0, 1, 7, 64, 512, 4096])))
    elif kind == "splice":
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 32))
    elif kind == "duplication" and data:
        start = rng.randrange(len(data))
        data[start:start] = data[start : start + rng.randint(1, 256)] * rng.randint(1, 20)
    elif kind == "crafted":
        return _crafted(rng)
    return kind, bytes(data)


_JSON_KEYS = [
    "resourceMetrics",
    "resource",
    "attributes",
    "key",
    "value",
    "stringValue",
    "intValue",
    "doubleValue",
    "arrayValue",
    "kvlistValue",
    "values",
    "scopeMetrics",
    "metrics",
    "name",
    "gauge",
    "sum",
    "histogram",
    "summary",
    "dataPoints",
    "asDouble",
    "asInt",
    "flags",
    "isMonotonic",
    "aggregationTemporality",
    "count",
    "explicitBounds",
    "bucketCounts",
    "quantileValues",
]


def _random_text(rng: random.Random, size: int) -> str:
    """Any unicode but surrogates (protobuf strings must be valid UTF-8)."""
    points = [rng.choice([rng.randrange(32, 127), rng.randrange(0xA0, 0xD800), rng.randrange(0xE000, 0x110000)])]
    points += [rng.randrange(32, 0xD800) for _ in range(size - 1)]
    return "".join(map(chr, points))[:size]


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 5 or roll < 0.35:
        return rng.choice(
            [None, True, 7, -1, 2**64, 1e308, "NaN", "Infinity", "1e999", "", _random_text(rng, 6), 0.5, "42"]
        )
    if roll < 0.55:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(_JSON_KEYS): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _json_payload(rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["random OTLP-shaped", "mutated valid", "deep", "not an object"])
    if kind == "random OTLP-shaped":
        document = {"resourceMetrics": [_random_json(rng) for _ in range(rng.randint(0, 3))]}
        return kind, json.dumps(document).encode()
    if kind == "mutated valid":
        text = json_format.MessageToJson(_seed_request(f"json-{rng.randrange(20)}"))
        at = rng.randrange(len(text))
        return kind, (
            text[:at] + rng.choice(["", "}", '"', "[", "1e999", _random_text(rng, 3)]) + text[at + 1 :]
        ).encode()
    if kind == "deep":
        return kind, ("[" * rng.choice([100, 1000, 5000])).encode()
    return kind, rng.choice([b"[]", b"42", b'"x"', b"null", b"\xff\xfe\x00", b""])


# -- senders -------------------------------------------------------------------------------------------


def _authorization(rng: random.Random) -> str | None:
    return rng.choices(
        [f"Bearer {TOKEN_FUZZ}", f"Bearer {TOKEN_ANY}", None, "Bearer not-a-token-at-all", "Basic abc"],
        weights=[60, 25, 8, 5, 2],
    )[0]


def _partial(reply: ExportMetricsServiceResponse) -> str:
    assert reply.partial_success.rejected_data_points >= 0
    return " partial" if reply.partial_success.rejected_data_points else ""


async def _grpc_export(channel: grpc.aio.Channel, rng: random.Random, seeds: list[bytes]) -> str:
    _, body = _mutate(rng, rng.choice(seeds))
    export = channel.unary_unary(EXPORT)
    authorization = _authorization(rng)
    metadata = (("authorization", authorization),) if authorization else ()
    compression = rng.choice([None, grpc.Compression.Gzip])
    try:
        raw = await export(body, metadata=metadata, timeout=ANSWER_WITHIN, compression=compression)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return "OK" + _partial(ExportMetricsServiceResponse.FromString(raw))


async def _http_export(session: aiohttp.ClientSession, url: str, rng: random.Random, seeds: list[bytes]) -> str:
    headers: dict[str, str] = {}
    roll = rng.random()
    if roll < 0.45:
        _, body = _mutate(rng, rng.choice(seeds))
        headers["Content-Type"] = "application/x-protobuf"
    elif roll < 0.8:
        _, body = _json_payload(rng)
        headers["Content-Type"] = rng.choice(["application/json", "application/json; charset=utf-8"])
    else:
        body = rng.choice(seeds)
        headers["Content-Type"] = rng.choice(
            ["text/plain", "application/grpc", "multipart/form-data; boundary=x", "application/x-protobuf; proto=x", ""]
        )
    encoding = rng.choices(["", "gzip", "bomb", "broken gzip", "deflate", "br", "identity"], [55, 15, 8, 8, 5, 5, 4])[0]
    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "bomb":  # within the limit, or far over it once inflated
        body = gzip.compress(body + bytes(rng.choice([100_000, 10_000_000])))
    elif encoding == "broken gzip":
        body = gzip.compress(body)[: rng.randint(1, 30)] + rng.randbytes(8)
    elif encoding == "deflate":
        body = zlib.compress(body) if rng.random() < 0.5 else rng.randbytes(16)
    elif encoding == "br":
        body = rng.randbytes(16)
    if encoding:
        headers["Content-Encoding"] = "gzip" if encoding in ("bomb", "broken gzip") else encoding
    if not headers["Content-Type"]:
        del headers["Content-Type"]
    authorization = _authorization(rng)
    if authorization:
        headers["Authorization"] = authorization
    async with session.post(url, data=body, headers=headers) as reply:
        await reply.read()
        if reply.status == 200 and reply.content_type == "application/x-protobuf":
            return "200" + _partial(ExportMetricsServiceResponse.FromString(await reply.read()))
        if reply.status == 200:
            return "200" + _partial(json_format.Parse(await reply.text(), ExportMetricsServiceResponse()))
        return str(reply.status)


_KEDA_KEYS = (*QUERY_KEYS, *POLICY_KEYS, "scalerAddress", "targetValueFromEnv", "metricquery", "")
_KEDA_VALUES = [
    "vllm",
    "decode",
    "prefill",
    "unified",
    "rate",
    "avg",
    "30s",
    "0s",
    "1e400",
    "nan",
    "-1",
    "4.000000",
    "llama",
    'sum(vllm:num_requests_running{namespace="fuzz-ns"})',
    'avg(vllm:num_requests_running{namespace="fuzz-ns"})',
    "vllm:generation_tokens",
    'max(x{a=~"(b|c)+"})',
    'role="decode"',
    "sum(",
    "",
]


def _random_ref(rng: random.Random) -> Any:
    """Mostly a valid trigger with a few keys changed, sometimes nothing valid at all."""
    bases = [
        {"metricQuery": rng.choice(_KEDA_VALUES[13:17]), "targetValue": "2"},
        {"metricQuery": _KEDA_VALUES[13], "targetValue": "1", "operationOverTime": "rate", "window": "30s"},
        {"policy": "vllm", "deployment": "llama", "namespace": "fuzz-ns"},
        {},
    ]
    metadata: dict[str, str] = dict(rng.choice(bases))
    for _ in range(rng.choice([0, 0, 1, 2, 5])):
        key = rng.choice(_KEDA_KEYS) if rng.random() < 0.7 else _random_text(rng, rng.randint(1, 12))
        metadata[key] = rng.choice(_KEDA_VALUES) if rng.random() < 0.7 else _random_text(rng, rng.randint(0, 40))
    namespace = rng.choice(["fuzz-ns", "fuzz-ns", "", "canary", _random_text(rng, 8)])
    return KedaClient.ref(metadata, name=_random_text(rng, rng.randint(0, 20)), namespace=namespace)


async def _keda_call(channel: grpc.aio.Channel, rng: random.Random) -> str:
    method = rng.choice(["GetMetricSpec", "GetMetrics", "IsActive", "StreamIsActive", "StreamMetricSpec", "raw"])
    ref = _random_ref(rng)
    try:
        if method == "raw":  # bytes that may not decode as a ScaledObjectRef at all
            _, body = _mutate(rng, ref.SerializeToString())
            call = channel.unary_unary(KEDA + rng.choice(["GetMetricSpec", "IsActive", "GetMetrics"]))
            await call(body, timeout=ANSWER_WITHIN)
            return "OK"
        if method in ("StreamIsActive", "StreamMetricSpec"):
            stream = KedaClient(channel).calls[method](ref, timeout=ANSWER_WITHIN)
            try:
                await asyncio.wait_for(stream.read(), 0.3)
            except TimeoutError:
                return "stream open"  # open and quiet: KEDA cancels such streams, as we do now
            finally:
                stream.cancel()
            return "OK"
        keda = KedaClient(channel)
        if method == "GetMetrics":
            name = rng.choice(["", _random_text(rng, 10), "s0-vllm-num-requests-running-0123456789"])
            await keda.get_metrics(ref, name)
        elif method == "IsActive":
            await keda.is_active(ref)
        else:
            await keda.get_metric_spec(ref)
        return "OK"
    except grpc.aio.AioRpcError as exc:
        return exc.code().name


async def _run(count: int, send: Callable[[random.Random], Awaitable[str]], rng: random.Random) -> Counter[str]:
    """`count` requests, IN_FLIGHT at a time, each with its own seeded generator; any hang is an outcome."""
    outcomes: Counter[str] = Counter()
    seeds = [rng.randrange(2**32) for _ in range(count)]

    async def one(seed: int) -> None:
        try:
            outcomes[await asyncio.wait_for(send(random.Random(seed)), ANSWER_WITHIN + 1)] += 1
        except TimeoutError:
            outcomes["hang"] += 1

    for start_at in range(0, count, IN_FLIGHT):
        await asyncio.gather(*(one(s) for s in seeds[start_at : start_at + IN_FLIGHT]))
    return outcomes


# -- the test ------------------------------------------------------------------------------------------


async def _push_with_token(scaler: Scaler, pods: list[PodMetrics], token: str) -> None:
    exporter = OTLPMetricExporter(
        endpoint=f"127.0.0.1:{scaler.ports['otlp-grpc']}", insecure=True, headers={"authorization": f"Bearer {token}"}
    )
    try:
        assert await asyncio.to_thread(push, exporter, pods, time.time_ns(), time.time_ns())
    finally:
        await asyncio.to_thread(exporter.shutdown)


def _canary_pod(pod: str, value: float, namespace: str = "canary") -> PodMetrics:
    resource = {"k8s.pod.name": pod, "k8s.namespace.name": namespace}
    return PodMetrics(resource).gauge("vllm:num_requests_running", value, {"namespace": namespace, "pod": pod})


def _canary_rows(scaler: Scaler) -> list[tuple[str, int, float]]:
    series = scaler.store.series_named("vllm:num_requests_running")
    return sorted((s.pod, s.sample_count(), s.last()) for s in series if s.pod.startswith("canary/"))


def _print_outcomes(outcomes: dict[str, Counter[str]], elapsed: float) -> None:
    total = sum(sum(counts.values()) for counts in outcomes.values())
    print(f"\nlive fuzz, seed {SEED}: {total} requests in {elapsed:.1f}s")
    for channel, counts in outcomes.items():
        print(f"  {channel:9} " + ", ".join(f"{outcome} {n}" for outcome, n in counts.most_common()))


async def test_fuzzed_payloads_get_proper_answers_and_leave_the_canary_intact(scaler: Scaler) -> None:
    await _push_with_token(scaler, [_canary_pod("c1", 40.0), _canary_pod("c2", 2.0)], TOKEN_CANARY)
    keda_channel = grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['scaler']}")
    otlp_channel = grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['otlp-grpc']}")
    session = aiohttp.ClientSession()
    try:
        keda = KedaClient(keda_channel)
        canary = keda.ref(CANARY_METADATA, name="canary", namespace="canary")
        assert await keda.value(canary) == 42.0
        before = _canary_rows(scaler)
        # A trigger whose view averages the fuzzed series on ingest, so that extreme values flow through it.
        averaged = {**CANARY_METADATA, "metricQuery": 'avg(vllm:num_requests_running{namespace="fuzz-ns"})'}
        await keda.get_metric_spec(keda.ref({**averaged, "operationOverTime": "avg"}, namespace="fuzz-ns"))

        rng = random.Random(SEED)
        seeds = [_seed_request(f"seed-{i}").SerializeToString() for i in range(3)]
        url = f"http://127.0.0.1:{scaler.ports['otlp-http']}/v1/metrics"
        started = time.monotonic()
        outcomes = {
            "otlp-grpc": await _run(ROUNDS["otlp-grpc"], lambda r: _grpc_export(otlp_channel, r, seeds), rng),
            "otlp-http": await _run(ROUNDS["otlp-http"], lambda r: _http_export(session, url, r, seeds), rng),
            "keda": await _run(ROUNDS["keda"], lambda r: _keda_call(keda_channel, r), rng),
        }
        _print_outcomes(outcomes, time.monotonic() - started)

        for channel, good in (("otlp-grpc", GOOD_GRPC), ("otlp-http", GOOD_HTTP), ("keda", GOOD_KEDA)):
            assert sum(outcomes[channel].values()) == ROUNDS[channel]
            assert set(outcomes[channel]) <= good, (channel, outcomes[channel])
        for channel, refused, stored in (("otlp-grpc", "INVALID_ARGUMENT", "OK"), ("otlp-http", "400", "200")):
            assert outcomes[channel][refused] >= 30 and outcomes[channel][stored] >= 10  # both paths exercised
        assert outcomes["keda"]["OK"] >= 10 and outcomes["keda"]["INVALID_ARGUMENT"] >= 30
        decode_failures = scaler.registry.get_sample_value(
            "keda_llm_scaler_otlp_requests_failed_total", {"transport": "grpc", "reason": "DecodeError"}
        )
        assert decode_failures == outcomes["otlp-grpc"]["INVALID_ARGUMENT"]  # counted where operators look

        health = health_pb2_grpc.HealthStub(keda_channel)  # type: ignore[no-untyped-call]
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=ANSWER_WITHIN)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        async with session.get(f"http://127.0.0.1:{scaler.ports['http']}/readyz") as ready:
            assert ready.status == 200
        assert _canary_rows(scaler) == before
        assert await keda.value(canary) == 42.0
        await _push_with_token(scaler, [_canary_pod("later", 5.0, namespace="later")], TOKEN_CANARY)
        later = {**CANARY_METADATA, "metricQuery": 'sum(vllm:num_requests_running{namespace="later"})'}
        assert await keda.value(keda.ref(later)) == 5.0
    finally:
        await session.close()
        await keda_channel.close()
        await otlp_channel.close()


async def test_undecodable_requests_are_invalid_argument_on_every_port(scaler: Scaler) -> None:
    """grpc's own decoding answers UNKNOWN and aiohttp answers 500 to a corrupt gzip body: not here."""
    corrupt = b"\x0a\xff\xff\xff\xff\x0f"
    bearer = (("authorization", f"Bearer {TOKEN_ANY}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['otlp-grpc']}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await channel.unary_unary(EXPORT)(corrupt, metadata=bearer, timeout=ANSWER_WITHIN)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "invalid OTLP protobuf payload" in (info.value.details() or "")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['scaler']}") as channel:
        for method in ("GetMetricSpec", "GetMetrics", "IsActive", "StreamIsActive"):
            call = (channel.unary_stream if method.startswith("Stream") else channel.unary_unary)(KEDA + method)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                reply = call(corrupt, timeout=ANSWER_WITHIN)
                await (reply.read() if method.startswith("Stream") else reply)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert "cannot decode" in (info.value.details() or "")
    url = f"http://127.0.0.1:{scaler.ports['otlp-http']}/v1/metrics"
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip", "Authorization": bearer[0][1]}
    async with aiohttp.ClientSession() as session:
        for _ in range(2):  # the broken connection is closed, not reused for the next request
            async with session.post(url, data=gzip.compress(b"x")[:10] + b"\xff" * 10, headers=headers) as reply:
                assert reply.status == 400
                assert "cannot read the request body" in await reply.text()
