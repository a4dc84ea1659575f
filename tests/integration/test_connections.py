"""Connections cannot exhaust the scaler: a cap per port, header/body/idle deadlines, quiet accept errors,
and thousands of StreamIsActive streams at once.

Floods run against a child scaler whose open-file limit is lowered by a small launcher, never the
test process's own; the rest runs against the in-process harness. Everything is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from scaler.listeners import ACCEPTS_PER_TICK, CONNECTION_SHARE, LISTEN_BACKLOG, LISTENERS
from tests.integration.conftest import FAST, Harness, eventually, kserve_pod
from tests.integration.test_keda_service import KSERVE_METADATA
from tests.keda_contract import ROOT, KedaClient

CHILD_FILE_LIMIT = 1024
FLOOD = 3000
CLOSED = "keda_llm_scaler_connections_closed_total"
LAUNCHER = """
import resource, runpy, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
sys.argv = ["keda-llm-scaler", "serve"]
runpy.run_module("scaler", run_name="__main__", alter_sys=True)
"""
CHILD_ENV = {
    "SCALER_HOST": "127.0.0.1",
    "SCALER_OTLP_GRPC_PORT": "0",
    "SCALER_OTLP_HTTP_PORT": "0",
    "SCALER_SCALER_PORT": "0",
    "SCALER_HTTP_PORT": "0",
    "SCALER_WARMUP": "0s",
    "SCALER_LOG_FORMAT": "text",
    "SCALER_HEADER_TIMEOUT": "1s",
}
LISTENING = re.compile(r"otlp-grpc=(\d+) otlp-http=(\d+) scaler=(\d+) http=(\d+)")


@dataclass
class Child:
    """A scaler in its own process: its ports, and its stderr lines as they come."""

    process: subprocess.Popen[bytes]
    ports: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def lines_since(self, mark: int) -> list[str]:
        return self.lines[mark:]


@contextlib.contextmanager
def child_scaler(file_limit: int = CHILD_FILE_LIMIT) -> Iterator[Child]:
    env = {**os.environ, **CHILD_ENV}
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(file_limit)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    child = Child(process)
    arrived: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode(errors="replace")
            child.lines.append(line)
            arrived.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while not child.ports:
            try:
                line = arrived.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the child scaler did not start: {child.lines[-5:]}") from None
            if found := LISTENING.search(line):
                child.ports = dict(
                    zip(("otlp-grpc", "otlp-http", "scaler", "http"), map(int, found.groups()), strict=True)
                )
        yield child
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        reader.join(5)
        if process.stderr is not None:
            process.stderr.close()


@contextlib.contextmanager
def idle_connections(ports: list[int], count: int) -> Iterator[list[socket.socket]]:
    """`count` TCP connections spread over `ports` that never send a byte."""
    needed = count + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the test process may open only {hard} files; the flood needs {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    sockets: list[socket.socket] = []
    try:
        for index in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", ports[index % len(ports)]))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


async def served_over_http(url: str, body: bytes | None, timeout: float) -> int:
    """The first HTTP status the server answers with, retrying connection failures until `timeout`."""
    headers = {"Content-Type": "application/x-protobuf"} if body is not None else {}
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
        while True:
            try:
                method = "POST" if body is not None else "GET"
                async with session.request(method, url, data=body, headers=headers) as response:
                    return response.status
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.1)


async def served_over_grpc(child: Child, timeout: float) -> int:
    """A health check on the scaler port and an empty export on the OTLP port, each as a new client."""
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{child.ports['scaler']}") as scaler,
        grpc.aio.insecure_channel(f"127.0.0.1:{child.ports['otlp-grpc']}") as otlp,
    ):
        health = health_pb2_grpc.HealthStub(scaler)  # type: ignore[no-untyped-call]
        export = metrics_service_pb2_grpc.MetricsServiceStub(otlp)  # type: ignore[attr-defined]
        checked = await health.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=timeout)
        await export.Export(ExportMetricsServiceRequest(), wait_for_ready=True, timeout=timeout)
        return int(checked.status)


async def test_an_idle_connection_flood_at_a_low_file_limit_leaves_every_port_serving() -> None:
    """3,000 idle connections against 1,024 files: new clients on every port are still served, quietly.

    Before the cap, the scaler ran out of files: new connections timed out on all four ports, and it
    logged a traceback per failed accept(), thousands a second.
    """
    with child_scaler() as child:
        mark = len(child.lines)
        ports = list(child.ports.values())
        with idle_connections(ports, FLOOD):
            await asyncio.sleep(0.5)  # the flood is in: each port holds what its cap allows
            started = time.monotonic()
            ops = served_over_http(f"http://127.0.0.1:{child.ports['http']}/healthz", None, 10)
            push = served_over_http(f"http://127.0.0.1:{child.ports['otlp-http']}/v1/metrics", b"", 10)
            statuses = await asyncio.gather(ops, push, served_over_grpc(child, 10))
            took = time.monotonic() - started
            await asyncio.sleep(1.0)
        assert statuses == [200, 200, health_pb2.HealthCheckResponse.SERVING]
        assert took < 5, f"new clients waited {took:.1f}s"  # gRPC ports: until the 1s handshake deadline
        logged = child.lines_since(mark)
        assert len(logged) <= 20, f"{len(logged)} lines logged during the flood, e.g. {logged[:3]}"
        per_port = CHILD_FILE_LIMIT // (CONNECTION_SHARE * LISTENERS)  # what the start-up log says it chose
        assert any(f"up to {per_port} connections per port" in line for line in child.lines), child.lines[:5]


async def test_accept_errors_are_counted_and_logged_once_per_port_every_few_seconds() -> None:
    """Out of files for a reason beyond the cap (here the test lowers the child's limit): each failed
    accept() is counted, and each port logs one line every few seconds instead of a traceback each."""
    if not hasattr(resource, "prlimit"):
        pytest.skip("needs prlimit(2) to lower a running child's open-file limit")
    with child_scaler() as child:
        mark = len(child.lines)
        pid = child.process.pid
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (48, CHILD_FILE_LIMIT))
        try:
            with idle_connections(list(child.ports.values()), 400):
                await asyncio.sleep(6.0)
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (CHILD_FILE_LIMIT, CHILD_FILE_LIMIT))
        metrics = await scrape(child, timeout=10)
        logged = child.lines_since(mark)
    ours = [line for line in logged if "cannot accept connections" in line]
    for name in ("otlp-http", "http"):
        assert sample(metrics, "keda_llm_scaler_accept_errors_total", port=name) > 0
        lines = [line for line in ours if f"on the {name} port" in line]
        assert 1 <= len(lines) <= 3, lines  # ACCEPT_LOG_EVERY is 5s; the flood lasted 6s
    assert len(logged) <= 30, f"{len(logged)} lines in 6s, e.g. {Counter(logged).most_common(3)}"


async def scrape(child: Child, timeout: float) -> str:
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{child.ports['http']}/metrics") as response:
                    return await response.text()
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)


def sample(exposition: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for line in exposition.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{wanted}}} is not exported")


# In-process: deadlines, the cap, and streams.

SLOW = replace(FAST, header_timeout=1.0, body_timeout=1.0, idle_timeout=30.0)


@contextlib.asynccontextmanager
async def raw(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sends until it closes the connection, which it must do within `seconds`."""
    async with asyncio.timeout(seconds):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


async def trickle(writer: asyncio.StreamWriter, data: bytes, every: float = 0.1) -> None:
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)


def closed(harness: Harness, port: str, reason: str) -> float:
    value = harness.scaler.registry.get_sample_value(CLOSED, {"port": port, "reason": reason})
    assert value is not None, f"{CLOSED}{{port={port!r}, reason={reason!r}}} is not exported"
    return value


@pytest.mark.parametrize("settings", [SLOW])
async def test_slow_headers_and_slow_bodies_are_cut_while_a_good_client_is_served(harness: Harness) -> None:
    otlp, ops = harness.scaler.ports["otlp-http"], harness.scaler.ports["http"]
    head = b"POST /v1/metrics HTTP/1.1\r\nHost: scaler\r\nContent-Type: application/x-protobuf\r\n"
    async with (
        raw(otlp) as (slow_head, head_writer),
        raw(otlp) as (slow_body, body_writer),
        raw(ops) as (ops_head, ops_writer),
    ):
        head_writer.write(head)
        body_writer.write(head + b"Content-Length: 100000\r\n\r\n")
        ops_writer.write(b"GET /metrics HTTP/1.1\r\n")
        started = time.monotonic()
        trickles = [
            asyncio.create_task(trickle(head_writer, b"X-Slow: " + b"a" * 200)),
            asyncio.create_task(trickle(body_writer, b"\x00" * 200)),
            asyncio.create_task(trickle(ops_writer, b"Host: " + b"a" * 200)),
        ]
        try:
            await harness.push([kserve_pod("p1", 2)], protocol="http")  # the good client beside them
            assert await harness.keda.is_active(harness.keda.ref(KSERVE_METADATA))
            cut = await asyncio.gather(*(closed_within(r, 5) for r in (slow_head, slow_body, ops_head)))
        finally:
            for task in trickles:
                task.cancel()
    took = time.monotonic() - started
    assert cut[0] == b"" and cut[2] == b""  # headers never finished: no answer, just closed
    assert cut[1].startswith(b"HTTP/1.1 408"), cut[1][:80]
    assert took < 1.0 + 2.0 + 1.0, f"{took:.1f}s"  # --body-timeout, aiohttp's lingering read, slack
    assert closed(harness, "otlp-http", "header_timeout") == 1
    assert closed(harness, "http", "header_timeout") == 1
    assert closed(harness, "otlp-http", "body_timeout") == 1


@pytest.mark.parametrize("settings", [replace(FAST, idle_timeout=1.0)])
async def test_idle_connections_are_closed_after_the_idle_timeout(harness: Harness) -> None:
    async with raw(harness.scaler.ports["http"]) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: scaler\r\n\r\n")
        answer = await closed_within(reader, 3.0)  # answered, kept alive, then closed once idle
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok\n")
    await harness.keda.get_metric_spec(harness.keda.ref(KSERVE_METADATA))
    await eventually(lambda: harness.channel.get_state() == grpc.ChannelConnectivity.IDLE, timeout=4.0)


@pytest.mark.parametrize("settings", [replace(FAST, max_connections=4, header_timeout=30.0)])
async def test_at_the_cap_an_http_port_closes_its_longest_idle_connection_for_a_new_one(harness: Harness) -> None:
    port = harness.scaler.ports["http"]
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(raw(port)) for _ in range(4)]
        await asyncio.sleep(0.2)
        assert await served_over_http(harness.url("/healthz"), None, 3) == 200
        assert await closed_within(held[0][0], 2) == b""  # the oldest was closed for the newcomer
        assert closed(harness, "http", "evicted") == 1
        for reader, _ in held[1:]:
            assert not reader.at_eof()


@pytest.mark.parametrize("settings", [replace(FAST, max_connections=4)])
async def test_at_the_cap_with_every_connection_mid_request_a_new_one_is_refused(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    port = harness.scaler.ports["otlp-http"]
    head = b"POST /v1/metrics HTTP/1.1\r\nHost: s\r\nContent-Type: application/x-protobuf\r\nContent-Length: 9\r\n\r\n"
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(4):
            _, writer = await stack.enter_async_context(raw(port))
            writer.write(head + b"\x00")  # mid-body: busy, not idle
        await asyncio.sleep(0.3)  # each is past its headers, waiting for the rest of its body
        reader, _ = await stack.enter_async_context(raw(port))
        assert await closed_within(reader, 2) == b""
    await asyncio.sleep(0.2)  # the clients have left mid-body: quietly, without a traceback each
    assert closed(harness, "otlp-http", "over_limit") == 1
    assert closed(harness, "otlp-http", "evicted") == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("settings", [replace(FAST, max_connections=4, header_timeout=30.0)])
async def test_at_the_cap_a_grpc_port_refuses_new_connections(harness: Harness) -> None:
    port = harness.scaler.ports["scaler"]
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(raw(port)) for _ in range(4)]
        await asyncio.sleep(0.2)
        reader, _ = await stack.enter_async_context(raw(port))
        assert await closed_within(reader, 2) == b""
        for held_reader, _ in held:
            assert not held_reader.at_eof()


BURST = 300  # connections arriving while the loop is busy: more than aiohttp's default backlog of 128


def handshakes_within(port: int, count: int, seconds: float) -> int:
    """How many of `count` connections opened at once finish their TCP handshake within `seconds`.

    The kernel finishes a handshake only while the listening socket's queue has room; beyond it the SYN
    is dropped and the client retries a second later.
    """
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
        deadline, connected = time.monotonic() + seconds, set()
        while len(connected) < count and time.monotonic() < deadline:
            _, writable, _ = select.select([], [s for s in sockets if s not in connected], [], 0.05)
            connected.update(s for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
        return len(connected)
    finally:
        for s in sockets:
            s.close()


def somaxconn() -> int:
    with open("/proc/sys/net/core/somaxconn") as limit:
        return int(limit.read())


@pytest.mark.skipif(somaxconn() < BURST, reason="net.core.somaxconn caps every listen backlog below the burst")
@pytest.mark.parametrize("port_name", ["otlp-http", "http"])
async def test_a_burst_of_connections_while_the_loop_is_busy_waits_in_the_kernel_queue(
    harness: Harness, port_name: str
) -> None:
    """asyncio accepts ACCEPTS_PER_TICK connections a tick; the listening queue is deeper, so a reconnect
    storm that arrives while the loop is busy is not left to SYN retries."""
    assert ACCEPTS_PER_TICK < BURST <= LISTEN_BACKLOG
    # Called without awaiting, this holds the event loop: the scaler accepts nothing meanwhile.
    assert handshakes_within(harness.scaler.ports[port_name], BURST, 0.5) == BURST
    assert await served_over_http(harness.url("/healthz"), None, 3) == 200


STREAMS = 3000


async def first_answer(keda: KedaClient, ref: Any) -> str:
    call = keda.stream_is_active(ref)
    try:
        reply = await call.read()
        return "true" if reply.result else "false"
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    finally:
        call.cancel()


@pytest.mark.parametrize("settings", [replace(FAST, stale_after=30.0)])
@pytest.mark.parametrize("channels", [30, 1], ids=["30-connections", "one-connection"])
async def test_3000_streams_opened_at_once_all_get_their_first_true(harness: Harness, channels: int) -> None:
    """Before grpc.server.max_pending_requests was raised, about 15 % of such a burst was CANCELLED."""
    await harness.push([kserve_pod("p1", 3)])
    ref = harness.keda.ref(KSERVE_METADATA)
    target = f"127.0.0.1:{harness.scaler.ports['scaler']}"
    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    opened = [grpc.aio.insecure_channel(target, options=own_connection) for _ in range(channels)]
    try:
        clients = [KedaClient(channel) for channel in opened]
        async with asyncio.timeout(30):
            await asyncio.gather(*(channel.channel_ready() for channel in opened))
            answers = await asyncio.gather(*(first_answer(clients[i % channels], ref) for i in range(STREAMS)))
    finally:
        await asyncio.gather(*(channel.close() for channel in opened))
    assert Counter(answers) == {"true": STREAMS}
