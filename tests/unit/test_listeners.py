"""scaler.listeners without sockets: the open-file plan, the gRPC options and methods, who is evicted at
the cap, when a connection gets its HTTP handler, and how accept() failures are counted and logged."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from scaler.listeners import (
    ACCEPT_FAILED,
    ACCEPT_LOG_EVERY,
    CONNECTION_SHARE,
    LISTENERS,
    AcceptErrors,
    ConnectionLimits,
    FileBudget,
    FileChoice,
    HttpListener,
    _Connection,
    add_methods,
    grpc_options,
    log_connection_limits,
    plan_files,
    stream_options,
)

UNLIMITED = resource.RLIM_INFINITY


def test_a_short_soft_limit_is_raised_to_what_the_connections_need() -> None:
    need = CONNECTION_SHARE * LISTENERS * 4096
    assert plan_files(4096, soft=1024, hard=1_048_576) == FileBudget(soft=need, per_port=4096)


def test_the_hard_limit_caps_the_raise_and_the_connections_fit_into_it() -> None:
    assert plan_files(4096, soft=1024, hard=1024) == FileBudget(1024, 1024 // (CONNECTION_SHARE * LISTENERS))
    assert plan_files(4096, soft=1024, hard=20_000) == FileBudget(20_000, 2500)


def test_a_large_or_unlimited_soft_limit_is_left_alone() -> None:
    assert plan_files(4096, soft=1_048_576, hard=1_048_576) == FileBudget(1_048_576, 4096)
    assert plan_files(4096, soft=UNLIMITED, hard=UNLIMITED) == FileBudget(UNLIMITED, 4096)
    assert plan_files(4096, soft=1024, hard=UNLIMITED).per_port == 4096


def test_a_tiny_limit_leaves_no_connections() -> None:
    assert plan_files(4096, soft=7, hard=7).per_port == 0


def test_a_cap_lowered_to_fit_the_file_limit_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    fitted = ConnectionLimits(128, 10.0, 30.0, 120.0, FileChoice(4096, 1024, 1024, FileBudget(1024, 128)))
    with caplog.at_level(logging.INFO, logger="scaler.listeners"):
        log_connection_limits(fitted)
        log_connection_limits(
            ConnectionLimits(4096, 10.0, 30.0, 120.0, FileChoice(4096, 1024, UNLIMITED, FileBudget(32768, 4096)))
        )
    lowered, raised = caplog.records
    assert lowered.levelno == logging.WARNING
    assert lowered.getMessage() == (
        "open files: RLIMIT_NOFILE soft 1024 (was 1024, hard 1024): "
        "up to 128 connections per port (--max-connections 4096)"
    )
    assert raised.levelno == logging.INFO
    assert "soft 32768 (was 1024, hard unlimited): up to 4096" in raised.getMessage()


LIMITS = ConnectionLimits(per_port=2, header_timeout=10.0, body_timeout=30.0, idle_timeout=120.0)


def test_grpc_options_are_grpc_cores_names_in_milliseconds() -> None:
    assert dict(grpc_options(LIMITS)) == {
        "grpc.max_allowed_incoming_connections": 2,
        "grpc.server_handshake_timeout_ms": 10_000,
        "grpc.max_connection_idle_ms": 120_000,
        "grpc.keepalive_time_ms": 120_000,
    }
    assert dict(stream_options(3000)) == {
        "grpc.max_concurrent_streams": 3000,
        "grpc.server.max_pending_requests": 3000,
        "grpc.server.max_pending_requests_hard_limit": 3000,
    }


class RecordingServer:
    """The two ways a grpc.aio server takes handlers, recorded."""

    def __init__(self) -> None:
        self.generic: list[Any] = []
        self.registered: dict[str, dict[str, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: tuple[Any, ...]) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.registered[service] = handlers


def test_methods_are_registered_so_that_each_has_its_own_queue_of_calls() -> None:
    """Registered, GetMetrics does not queue in grpc-core behind a burst of StreamIsActive calls."""
    server, handlers = RecordingServer(), {"GetMetrics": object(), "StreamIsActive": object()}
    add_methods(server, "externalscaler.ExternalScaler", handlers)  # type: ignore[arg-type]
    assert server.registered == {"externalscaler.ExternalScaler": handlers}
    assert len(server.generic) == 1  # and the generic handler, as grpc's generated code adds both


class FakeConnection:
    def __init__(self, listener: HttpListener) -> None:
        self.listener = listener
        self.transport = object()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.listener.forget(self)  # type: ignore[arg-type]


def closed_by(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value("closed_total", {"port": "http", "reason": reason})


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def listener(registry: CollectorRegistry) -> HttpListener:
    return HttpListener("http", LIMITS, Counter("closed", "", ["port", "reason"], registry=registry))


def admitted(listener: HttpListener) -> FakeConnection | None:
    connection = FakeConnection(listener)
    return connection if listener.admit(connection) else None  # type: ignore[arg-type]


def test_at_the_cap_the_connection_waiting_longest_is_closed(listener: HttpListener, registry: Any) -> None:
    first, second = admitted(listener), admitted(listener)
    assert first is not None and second is not None
    listener.busy(first)  # mid-request
    listener.waiting(first)  # answered: now it has waited the shortest
    third = admitted(listener)
    assert third is not None
    assert (first.closed, second.closed) == (False, True)
    assert closed_by(registry, "evicted") == 1


def test_at_the_cap_with_every_connection_mid_request_a_new_one_is_refused(
    listener: HttpListener, registry: Any
) -> None:
    for connection in (admitted(listener), admitted(listener)):
        assert connection is not None
        listener.busy(connection)  # type: ignore[arg-type]
    assert admitted(listener) is None
    assert closed_by(registry, "over_limit") == 1
    assert closed_by(registry, "evicted") == 0


def test_a_closed_connection_frees_its_place(listener: HttpListener) -> None:
    first, second = admitted(listener), admitted(listener)
    assert first is not None and second is not None
    listener.busy(first)
    listener.busy(second)
    listener.forget(first)  # type: ignore[arg-type]
    assert admitted(listener) is not None


def test_a_request_finishing_after_its_client_left_does_not_come_back_as_idle(listener: HttpListener) -> None:
    gone, busy = admitted(listener), admitted(listener)
    assert gone is not None and busy is not None
    listener.busy(gone)
    listener.busy(busy)
    listener.forget(gone)  # type: ignore[arg-type]  # the client left mid-request
    listener.waiting(gone)  # type: ignore[arg-type]  # then its handler finished
    newcomer = admitted(listener)
    assert newcomer is not None
    assert admitted(listener) is not None  # room made by closing the newcomer, never the one already gone
    assert (gone.closed, newcomer.closed) == (False, True)


class FakeSocket:
    def __init__(self, port: int) -> None:
        self.port = port

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


class FakeLoop:
    def __init__(self) -> None:
        self.handler: Any = None
        self.default: list[dict[str, Any]] = []

    def get_exception_handler(self) -> Any:
        return self.handler

    def set_exception_handler(self, handler: Any) -> None:
        self.handler = handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.default.append(context)


def accept_failed(port: int) -> dict[str, Any]:
    error = OSError(errno.EMFILE, "Too many open files")
    return {"message": ACCEPT_FAILED, "exception": error, "socket": FakeSocket(port)}


def test_accept_failures_are_each_counted_and_logged_once_per_port_every_few_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    now = [100.0]
    errors = AcceptErrors(Counter("accept_errors", "", ["port"], registry=registry), clock=lambda: now[0])
    errors.watch(4318, "otlp-http")
    errors.watch(8080, "http")
    loop = FakeLoop()
    errors.install(loop)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="scaler.listeners"):
        for _ in range(500):
            loop.handler(loop, accept_failed(4318))
        loop.handler(loop, accept_failed(8080))
        now[0] += ACCEPT_LOG_EVERY
        loop.handler(loop, accept_failed(4318))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "otlp-http port" in lines[0] and "(0 more" in lines[0]
    assert "http port" in lines[1]
    assert "(499 more" in lines[2]  # the ones held back since the last line
    assert registry.get_sample_value("accept_errors_total", {"port": "otlp-http"}) == 501
    assert registry.get_sample_value("accept_errors_total", {"port": "http"}) == 1
    assert loop.default == []


def test_other_loop_errors_go_to_the_previous_handler_and_uninstall_restores_it() -> None:
    errors = AcceptErrors(Counter("accept_errors", "", ["port"], registry=CollectorRegistry()))
    errors.watch(4318, "otlp-http")
    loop = FakeLoop()
    seen: list[dict[str, Any]] = []

    def previous(_: Any, context: dict[str, Any]) -> None:
        seen.append(context)

    loop.handler = previous
    errors.install(loop)  # type: ignore[arg-type]
    other = {"message": "Task exception was never retrieved"}
    elsewhere = accept_failed(9999)  # not one of our ports
    loop.handler(loop, other)
    loop.handler(loop, elsewhere)
    assert seen == [other, elsewhere]
    errors.uninstall()
    assert loop.handler is previous


def test_without_a_previous_handler_other_errors_go_to_the_loops_default() -> None:
    errors = AcceptErrors(Counter("accept_errors", "", ["port"], registry=CollectorRegistry()))
    loop = FakeLoop()
    errors.install(loop)  # type: ignore[arg-type]
    loop.handler(loop, {"message": "something else"})
    assert loop.default == [{"message": "something else"}]


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


class RecordingHandler:
    def __init__(self, events: list[tuple[str, object]]) -> None:
        self.events = events

    def connection_made(self, transport: object) -> None:
        self.events.append(("made", transport))

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))

    def connection_lost(self, exc: object) -> None:
        self.events.append(("lost", exc))


async def test_a_connection_gets_its_http_handler_with_its_first_byte(listener: HttpListener) -> None:
    """An idle connection costs no aiohttp handler (a task and its timers), and closing it builds none."""
    events: list[tuple[str, object]] = []
    listener._server = lambda: RecordingHandler(events)  # type: ignore[assignment]
    idle, talking = _Connection(listener), _Connection(listener)
    idle_transport, talking_transport = FakeTransport(), FakeTransport()
    idle.connection_made(idle_transport)
    talking.connection_made(talking_transport)
    assert events == []
    talking.data_received(b"GET / HTTP/1.1\r\n")
    talking.data_received(b"Host: s\r\n\r\n")
    assert events == [("made", talking_transport), ("data", b"GET / HTTP/1.1\r\n"), ("data", b"Host: s\r\n\r\n")]
    idle.close()
    idle.data_received(b"late")  # bytes that were already on their way when it was closed
    idle.connection_lost(None)
    talking.connection_lost(None)
    assert idle_transport.is_closing()
    assert events[3:] == [("lost", None)]  # the talking one's; the idle one never had a handler
    talking._cancel_header_deadline()
