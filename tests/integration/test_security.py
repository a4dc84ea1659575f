"""TLS and mTLS on every listener, authenticated pushes, tenant isolation, and request limits."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc

from scaler.app import Scaler, start
from scaler.settings import Settings
from tests.integration.conftest import FAST
from tests.integration.test_keda_service import KSERVE_METADATA
from tests.integration.test_receivers import otlp_request
from tests.keda_contract import KedaClient
from tests.support.certs import Authority

TOKEN_A = "token-for-namespace-ns-0123456789"
TOKEN_ANY = "token-for-every-namespace-0123456789"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path | bytes]:
    ca = Authority()
    server_cert, server_key = ca.issue("scaler", server=True).write(tmp_path, "server")
    client_cert, client_key = ca.issue("keda", server=False).write(tmp_path, "client")
    ca_path = tmp_path / "ca.crt"
    ca_path.write_bytes(ca.pem)
    return {
        "ca": ca_path,
        "ca_pem": ca.pem,
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }


async def _running(settings: Settings) -> Scaler:
    return await start(settings)


@pytest.fixture
async def mtls_scaler(pki: dict[str, Path | bytes]) -> AsyncIterator[Scaler]:
    settings = replace(
        FAST, tls_cert=str(pki["server_cert"]), tls_key=str(pki["server_key"]), tls_client_ca=str(pki["ca"])
    )
    scaler = await start(settings)
    yield scaler
    await scaler.stop()


def _client_credentials(pki: dict[str, Path | bytes], with_client_cert: bool) -> grpc.ChannelCredentials:
    ca = pki["ca_pem"]
    assert isinstance(ca, bytes)
    if not with_client_cert:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    key = Path(str(pki["client_key"])).read_bytes()
    cert = Path(str(pki["client_cert"])).read_bytes()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


async def test_mtls_on_the_scaler_port(mtls_scaler: Scaler, pki: dict[str, Path | bytes]) -> None:
    address = f"127.0.0.1:{mtls_scaler.ports['scaler']}"
    async with grpc.aio.secure_channel(address, _client_credentials(pki, True)) as channel:
        # GetMetricSpec needs no data, so the UNAVAILABLE below can only be the transport's
        assert (await KedaClient(channel).get_metric_spec(KedaClient.ref(KSERVE_METADATA))).metricSpecs
    for credentials in (_client_credentials(pki, False), None):
        channel = grpc.aio.secure_channel(address, credentials) if credentials else grpc.aio.insecure_channel(address)
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await KedaClient(channel).get_metric_spec(KedaClient.ref(KSERVE_METADATA))
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_on_both_otlp_receivers(mtls_scaler: Scaler, pki: dict[str, Path | bytes]) -> None:
    address = f"127.0.0.1:{mtls_scaler.ports['otlp-grpc']}"
    async with grpc.aio.secure_channel(address, _client_credentials(pki, True)) as channel:
        stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = await stub.Export(otlp_request("p1", 2.0))
        assert reply.partial_success.rejected_data_points == 0
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    url = f"https://127.0.0.1:{mtls_scaler.ports['otlp-http']}/v1/metrics"
    body = otlp_request("p2", 3.0).SerializeToString()
    headers = {"Content-Type": "application/x-protobuf"}
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(url, data=body, headers=headers, ssl=context):
                pass
        context.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
        async with session.post(url, data=body, headers=headers, ssl=context) as reply:
            assert reply.status == 200
    assert mtls_scaler.store.stats(0, 1e9).series == 2


async def test_certificates_reload_when_their_files_change(tmp_path: Path) -> None:
    first, second = Authority("first-ca"), Authority("second-ca")
    cert, key = first.issue("scaler", server=True).write(tmp_path, "server")
    scaler = await start(replace(FAST, tls_cert=str(cert), tls_key=str(key)))
    try:
        address = f"127.0.0.1:{scaler.ports['scaler']}"
        trusts_second = grpc.ssl_channel_credentials(root_certificates=second.pem)
        async with grpc.aio.secure_channel(address, trusts_second) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await KedaClient(channel).get_metric_spec(KedaClient.ref(KSERVE_METADATA))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        second.issue("scaler", server=True).write(tmp_path, "server")  # cert-manager renews in place
        async with grpc.aio.secure_channel(address, trusts_second) as channel:
            assert (await KedaClient(channel).get_metric_spec(KedaClient.ref(KSERVE_METADATA))).metricSpecs
        http_context = ssl.create_default_context(cadata=second.pem.decode())
        url = f"https://127.0.0.1:{scaler.ports['otlp-http']}/v1/metrics"
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url,
                data=otlp_request("p1", 1.0).SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
                ssl=http_context,
            ) as reply,
        ):
            assert reply.status == 200
        assert scaler.tls is not None and scaler.tls.reloads == 1
    finally:
        await scaler.stop()


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Scaler]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# bound to ns\n{TOKEN_A}  ns\n{TOKEN_ANY}\n")
    settings = replace(
        FAST,
        otlp_token_file=str(tokens),
        isolate_namespaces=True,
        max_datapoints_per_request=5,
        max_labels_per_series=8,
        max_label_length=64,
        max_push_rate=20.0,
        max_request_bytes=4096,
    )
    scaler = await start(settings)
    yield scaler
    await scaler.stop()


def _stub(scaler: Scaler) -> tuple[grpc.aio.Channel, object]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['otlp-grpc']}")
    return channel, metrics_service_pb2_grpc.MetricsServiceStub(channel)  # type: ignore[no-untyped-call]


def _bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def test_pushes_need_a_known_token(guarded: Scaler) -> None:
    channel, stub = _stub(guarded)
    async with channel:
        for metadata in ((), _bearer("not-a-known-token-at-all")):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Export(otlp_request("p1", 1.0), metadata=metadata)  # type: ignore[attr-defined]
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = await stub.Export(otlp_request("p1", 1.0), metadata=_bearer(TOKEN_A))  # type: ignore[attr-defined]
        assert ok.partial_success.rejected_data_points == 0
    url = f"http://127.0.0.1:{guarded.ports['otlp-http']}/v1/metrics"
    body = otlp_request("p2", 1.0).SerializeToString()
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers={"Content-Type": "application/x-protobuf"}) as reply:
            assert reply.status == 401
        headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {TOKEN_ANY}"}
        async with session.post(url, data=body, headers=headers) as reply:
            assert reply.status == 200
    failed = guarded.registry.get_sample_value(
        "keda_llm_scaler_otlp_requests_failed_total", {"transport": "grpc", "reason": "Unauthenticated"}
    )
    assert failed == 2.0


async def test_a_namespace_bound_token_writes_only_its_namespace(guarded: Scaler) -> None:
    channel, stub = _stub(guarded)
    async with channel:
        own = otlp_request("p1", 1.0)  # labelled namespace="ns"
        assert (await stub.Export(own, metadata=_bearer(TOKEN_A))).partial_success.rejected_data_points == 0  # type: ignore[attr-defined]
        foreign = otlp_request("p2", 9.0)
        for point in foreign.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points:
            for attribute in point.attributes:
                if attribute.key == "namespace":
                    attribute.value.string_value = "other"
        reply = await stub.Export(foreign, metadata=_bearer(TOKEN_A))  # type: ignore[attr-defined]
        assert reply.partial_success.rejected_data_points == 1
        assert "namespace_not_allowed" in reply.partial_success.error_message


async def test_isolation_confines_a_scaledobject_to_its_namespace(guarded: Scaler) -> None:
    channel, stub = _stub(guarded)
    async with channel:
        await stub.Export(otlp_request("p1", 2.0), metadata=_bearer(TOKEN_ANY))  # type: ignore[attr-defined]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{guarded.ports['scaler']}") as scaler_channel:
        keda = KedaClient(scaler_channel)
        everything = {**KSERVE_METADATA, "metricQuery": "sum(vllm:num_requests_running)"}
        assert await keda.value(keda.ref(everything, namespace="ns")) == 2.0
        assert await keda.value(keda.ref(everything, namespace="intruder")) == 0.0
        policy = {"policy": "vllm", "deployment": "isvc-predictor", "namespace": "ns"}
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await keda.value(keda.ref(policy, namespace="intruder"))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "isolates namespaces" in (info.value.details() or "")


async def test_limits_refuse_with_the_limit_named_and_keep_stored_data(guarded: Scaler) -> None:
    channel, stub = _stub(guarded)
    async with channel:
        ok = await stub.Export(otlp_request("p1", 1.0, 2.0), metadata=_bearer(TOKEN_ANY))  # type: ignore[attr-defined]
        assert ok.partial_success.rejected_data_points == 0
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Export(otlp_request("p1", *range(6)), metadata=_bearer(TOKEN_ANY))  # type: ignore[attr-defined]
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-datapoints-per-request is 5" in (info.value.details() or "")

        wide = otlp_request("p1", 1.0)
        point = wide.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
        for i in range(8):
            point.attributes.add(key=f"extra{i}").value.string_value = "x"
        long = otlp_request("p1", 1.0)
        long.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].attributes.add(
            key="note"
        ).value.string_value = "y" * 65
        for request, reason in ((wide, "too_many_labels"), (long, "label_too_long")):
            reply = await stub.Export(request, metadata=_bearer(TOKEN_ANY))  # type: ignore[attr-defined]
            assert reply.partial_success.rejected_data_points == 1
            assert reason in reply.partial_success.error_message

        huge = otlp_request("p1", 1.0)
        huge.resource_metrics[0].resource.attributes.add(key="blob").value.string_value = "z" * 8192
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Export(huge, metadata=_bearer(TOKEN_ANY))  # type: ignore[attr-defined]
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        for _ in range(10):  # 20 datapoints/s with a 40-point burst
            try:
                await stub.Export(otlp_request("p9", 1.0, 2.0, 3.0, 4.0, 5.0), metadata=_bearer(TOKEN_ANY))  # type: ignore[attr-defined]
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "--max-push-rate (20 datapoints/s)" in (exc.details() or "")
                break
        else:
            pytest.fail("the push rate limit never applied")

    url = f"http://127.0.0.1:{guarded.ports['otlp-http']}/v1/metrics"
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {TOKEN_ANY}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=huge.SerializeToString(), headers=headers) as reply:
            assert reply.status == 413
            assert "--max-request-bytes" in await reply.text()
        statuses = []
        for _ in range(10):
            body = otlp_request("p9", 1.0, 2.0, 3.0, 4.0, 5.0).SerializeToString()
            async with session.post(url, data=body, headers=headers) as reply:
                statuses.append(reply.status)
                if reply.status == 429:
                    assert int(reply.headers["Retry-After"]) >= 1
                    break
        assert statuses[-1] == 429, statuses

    series = [s for s in guarded.store.series_named("vllm:num_requests_running") if s.pod == "ns/p1"]
    assert sorted(s.last() for s in series) == [1.0, 2.0]  # the first push, intact
