"""A rotated certificate, key or client CA is served by all three TLS listeners (scaler, OTLP/gRPC, OTLP/HTTP).

Before, the OTLP/HTTP listener reloaded while both gRPC ports kept the old certificate: whoever
called `refresh()` first (housekeeping, or the other gRPC port) consumed the change, and gRPC's
certificate fetcher then answered "unchanged". A client-CA rotation likewise kept accepting the old
CA's clients and refusing the new.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import replace
from pathlib import Path

import aiohttp
import grpc
from cryptography import x509
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc

from scaler.app import Scaler, start
from tests.integration.conftest import FAST
from tests.integration.test_keda_service import KSERVE_METADATA
from tests.integration.test_receivers import otlp_request
from tests.keda_contract import KedaClient
from tests.support.certs import Authority, Issued


class Generation:
    """One CA with the server and client certificates it issued."""

    def __init__(self, name: str) -> None:
        self.ca = Authority(name)
        self.server = self.ca.issue("scaler", server=True)
        self.client = self.ca.issue("keda", server=False)

    def install(self, folder: Path) -> None:
        """As cert-manager renews a Secret mounted as files: in place."""
        self.server.write(folder, "server")
        (folder / "ca.crt").write_bytes(self.ca.pem)

    @property
    def serial(self) -> int:
        return x509.load_pem_x509_certificate(self.server.cert).serial_number


def served_serial(port: int, trust: bytes, client: Issued, folder: Path, alpn: str) -> int:
    """The serial number of the certificate the listener on `port` presents."""
    context = ssl.create_default_context(cadata=trust.decode())
    cert, key = client.write(folder, "probe")
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols([alpn])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def grpc_accepts(scaler: Scaler, port_name: str, trust: bytes, client: Issued) -> bool:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=trust, private_key=client.key, certificate_chain=client.cert
    )
    async with grpc.aio.secure_channel(f"127.0.0.1:{scaler.ports[port_name]}", credentials) as channel:
        try:
            if port_name == "scaler":
                await KedaClient(channel).get_metric_spec(KedaClient.ref(KSERVE_METADATA))  # needs no data
            else:
                stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)  # type: ignore[no-untyped-call]
                await stub.Export(otlp_request("p1", 1.0), timeout=5)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            return False
    return True


async def http_accepts(scaler: Scaler, trust: bytes, client: Issued, folder: Path) -> bool:
    context = ssl.create_default_context(cadata=trust.decode())
    cert, key = client.write(folder, "http-client")
    context.load_cert_chain(str(cert), str(key))
    url = f"https://127.0.0.1:{scaler.ports['otlp-http']}/v1/metrics"
    body = otlp_request("p2", 1.0).SerializeToString()
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(url, data=body, headers={"Content-Type": "application/x-protobuf"}, ssl=context):
                return True
        except aiohttp.ClientError:
            return False


async def test_rotation_reaches_every_listener_twice(tmp_path: Path) -> None:
    certs, probes = tmp_path / "certs", tmp_path / "probes"
    certs.mkdir()
    probes.mkdir()
    generations = [Generation("first-ca"), Generation("second-ca"), Generation("third-ca")]
    generations[0].install(certs)
    settings = replace(
        FAST,
        tls_cert=str(certs / "server.crt"),
        tls_key=str(certs / "server.key"),
        tls_client_ca=str(certs / "ca.crt"),
    )
    scaler = await start(settings)
    try:
        previous = None
        for current in generations:
            if previous is not None:
                current.install(certs)
                assert scaler.tls is not None
                scaler.tls.refresh()  # as housekeeping does: it must not consume the change for the listeners
            for port_name, alpn in (("scaler", "h2"), ("otlp-grpc", "h2"), ("otlp-http", "http/1.1")):
                port = scaler.ports[port_name]
                serial = await asyncio.to_thread(served_serial, port, current.ca.pem, current.client, probes, alpn)
                assert serial == current.serial, f"{port_name} still serves an old certificate"
            for port_name in ("scaler", "otlp-grpc"):
                assert await grpc_accepts(scaler, port_name, current.ca.pem, current.client), port_name
                if previous is not None:
                    refused = not await grpc_accepts(scaler, port_name, current.ca.pem, previous.client)
                    assert refused, f"{port_name} still accepts the old CA's clients"
            assert await http_accepts(scaler, current.ca.pem, current.client, probes)
            if previous is not None:
                assert not await http_accepts(scaler, current.ca.pem, previous.client, probes)
            previous = current
    finally:
        await scaler.stop()
