"""Listeners: how many connections each port holds (within the open-file limit), how long a connection
may dawdle or sit idle, and accept() failures, counted and logged sparingly."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any

import grpc
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler
from prometheus_client import Counter

from scaler.settings import Settings

logger = logging.getLogger(__name__)

LISTENERS = 4  # otlp-grpc, otlp-http, scaler, ops
# asyncio accepts up to `backlog` connections per loop tick (Server._start_serving passes it on to
# selector_events._accept_connection), each with its transport and a task. Under a flood of new
# connections, 128 a tick held the loop for 20-40 ms a tick; with 16 the good client's p99 is 18-76 ms
# instead of 114-172 ms (load/bench_hostile.py row 17). The kernel's queue of connections not yet
# accepted is made deeper afterwards, so a reconnect storm waits a few ticks instead of losing SYNs.
ACCEPTS_PER_TICK = 16
LISTEN_BACKLOG = 1024
# Connections get at most half the open files. The other half is for the process's own (about 20) and
# for bursts: asyncio accepts a tick's worth of connections before any is refused or evicted, and
# grpc-core accepts each connection before it checks the connection quota.
CONNECTION_SHARE = 2
LINGER = 2.0  # seconds aiohttp may read an unwanted body after answering, so the client sees the answer
ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's message: selector_events._accept_connection
ACCEPT_LOG_EVERY = 5.0


@dataclass(frozen=True, slots=True)
class FileBudget:
    soft: int  # RLIMIT_NOFILE soft limit to set (the current one when no change is needed or possible)
    per_port: int  # connections each listener may hold


@dataclass(frozen=True, slots=True)
class FileChoice:
    """What start-up found and chose, for its log line."""

    wanted: int
    soft_was: int
    hard: int
    budget: FileBudget


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    per_port: int
    header_timeout: float
    body_timeout: float
    idle_timeout: float
    files: FileChoice | None = None


def plan_files(wanted: int, soft: int, hard: int) -> FileBudget:
    """Raise the soft limit toward what `wanted` connections on every port need, never past the hard limit;
    then fit the connections into what the limit allows. RLIM_INFINITY means no limit."""
    need = CONNECTION_SHARE * LISTENERS * wanted
    if soft != resource.RLIM_INFINITY and soft < need:
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
    room = need if soft == resource.RLIM_INFINITY else soft
    return FileBudget(soft, min(wanted, room // (CONNECTION_SHARE * LISTENERS)))


def open_file_budget(wanted: int) -> FileChoice:
    """Connections per port: raise RLIMIT_NOFILE's soft limit when it is short; OSError if none fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    plan = plan_files(wanted, soft, hard)
    if plan.soft != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (plan.soft, hard))
        except (ValueError, OSError) as exc:
            logger.warning("cannot raise the open-file limit from %d to %d: %s", soft, plan.soft, exc)
            plan = plan_files(wanted, soft, soft)
    if plan.per_port < 1:
        raise OSError(
            f"the open-file limit (RLIMIT_NOFILE {plan.soft}) leaves no room for connections: "
            f"they get at most 1/{CONNECTION_SHARE} of it, over {LISTENERS} ports; raise it (ulimit -n)"
        )
    return FileChoice(wanted, soft, hard, plan)


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The per-port connection cap fitted to the open-file limit (raised first if it is short), and the timeouts."""
    files = open_file_budget(settings.max_connections)
    timeouts = (settings.header_timeout, settings.body_timeout, settings.idle_timeout)
    return ConnectionLimits(files.budget.per_port, *timeouts, files=files)


def log_connection_limits(limits: ConnectionLimits) -> None:
    """One line after "listening on": the open-file limit and the cap chosen from it (a warning when lowered)."""
    if (files := limits.files) is None:
        return
    log = logger.warning if limits.per_port < files.wanted else logger.info
    log(
        "open files: RLIMIT_NOFILE soft %s (was %s, hard %s): up to %d connections per port (--max-connections %d)",
        *(_limit(value) for value in (files.budget.soft, files.soft_was, files.hard)),
        limits.per_port,
        files.wanted,
    )


def _limit(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def grpc_options(limits: ConnectionLimits) -> list[tuple[str, int]]:
    """Server options for every gRPC port. Names: grpc/grpc include/grpc/impl/channel_arg_names.h.

    grpc.max_allowed_incoming_connections is counted per listener (src/core/server/server.cc,
    Server::ListenerState, with ConnectionQuota in src/core/lib/resource_quota/connection_quota.cc):
    a connection beyond it is closed as soon as it is accepted.
    """
    idle_ms = round(limits.idle_timeout * 1000)
    return [
        ("grpc.max_allowed_incoming_connections", limits.per_port),
        ("grpc.server_handshake_timeout_ms", round(limits.header_timeout * 1000)),  # TLS and HTTP/2 preface
        ("grpc.max_connection_idle_ms", idle_ms),  # GOAWAY once no call has been open this long
        ("grpc.keepalive_time_ms", idle_ms),  # a peer that vanished with a stream open is found and dropped
    ]


def add_methods(server: grpc.aio.Server, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
    """Serve `handlers` (method name -> grpc RpcMethodHandler) as registered methods, as grpc's generated code does.

    grpc-core queues the calls of each registered method apart from the others, and grpc.aio keeps one
    request outstanding per registered method (grpc/grpc src/python/grpcio/grpc/_cython/_cygrpc/aio/
    server.pyx.pxi, `_server_main_loop`); calls to a generic handler all share one queue. With generic
    handlers alone, 3,000 StreamIsActive streams opened at once held the good client's GetMetrics
    behind them for 0.7-1.1 s (load/bench_hostile.py row 16); registered, its slowest call while they
    open is 6-33 ms. The generic handler stays, as in grpc's generated code.
    """
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)  # type: ignore[attr-defined]  # grpc-stubs predate it


def stream_options(max_streams: int) -> list[tuple[str, int]]:
    """Let `max_streams` calls wait for grpc.aio to pick them up instead of being cancelled.

    grpc-core keeps calls the application has not yet asked for in a queue guarded by random early
    drop between grpc.server.max_pending_requests (default 1000) and its hard limit (default 3000):
    src/core/server/server.h, pending_backlog_protector_. grpc.aio asks for calls one at a time, so a
    burst of 3,000 StreamIsActive streams lost about 15 % to CANCELLED.
    """
    return [
        ("grpc.max_concurrent_streams", max_streams),
        ("grpc.server.max_pending_requests", max_streams),
        ("grpc.server.max_pending_requests_hard_limit", max_streams),
    ]


class HttpListener:
    """One HTTP port: at most `per_port` connections, each cut when its headers or body are late.

    At the cap, a new connection closes the one that has waited longest without a request in flight
    (HTTP lets a server close an idle keep-alive connection at any time); only when every connection
    is mid-request is the new one refused. Idle connections are aiohttp's keepalive_timeout.
    """

    def __init__(self, name: str, limits: ConnectionLimits, closed: Counter) -> None:
        self.name = name
        self.limits = limits
        self._closed = closed
        self._open: dict[asyncio.BaseTransport, _Connection] = {}
        self._waiting: OrderedDict[_Connection, None] = OrderedDict()  # no request in flight, oldest first
        self._server: web.Server | None = None
        for reason in ("over_limit", "evicted", "header_timeout", "body_timeout"):
            closed.labels(name, reason)

    async def start(
        self, app: web.Application, host: str, port: int, ssl_context: SSLContext | None, grace: float
    ) -> web.AppRunner:
        """Serve `app` on host:port; the runner's cleanup gives in-flight requests `grace` seconds."""
        app.middlewares.append(self._middleware())
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self.limits.idle_timeout,
            lingering_time=LINGER,
            shutdown_timeout=grace,
        )
        await runner.setup()
        self._server = runner.server
        await _Site(runner, self, host, port, ssl_context).start()
        return runner

    def connection(self) -> asyncio.Protocol:
        return _Connection(self)

    def admit(self, connection: _Connection) -> bool:
        """Make room for a new connection by closing the longest-waiting one; False when nothing can go."""
        assert connection.transport is not None
        if len(self._open) >= self.limits.per_port:
            victim = next(iter(self._waiting), None)
            if victim is None:
                self.count("over_limit")
                return False
            self.count("evicted")
            victim.close()
        self._open[connection.transport] = connection
        self._waiting[connection] = None
        return True

    def handler(self) -> RequestHandler:
        assert self._server is not None, "start() first"
        return self._server()

    def waiting(self, connection: _Connection) -> None:
        if connection.transport is None or self._open.get(connection.transport) is not connection:
            return  # already closed: a handler finishing after its client left
        self._waiting[connection] = None
        self._waiting.move_to_end(connection)

    def busy(self, connection: _Connection) -> None:
        self._waiting.pop(connection, None)

    def forget(self, connection: _Connection) -> None:
        self._waiting.pop(connection, None)
        if connection.transport is not None and self._open.get(connection.transport) is connection:
            del self._open[connection.transport]

    def count(self, reason: str) -> None:
        self._closed.labels(self.name, reason).inc()

    def _middleware(self) -> Middleware:
        @web.middleware
        async def deadlines(request: web.Request, handler: Handler) -> web.StreamResponse:
            connection = self._open.get(request.transport) if request.transport is not None else None
            if connection is not None:
                connection.request_started()
            response: web.StreamResponse | None = None
            try:
                response = await self._within_body_timeout(request, handler)
                return response
            except ConnectionResetError:
                if request.transport is not None and not request.transport.is_closing():
                    raise
                # The client left mid-request: nobody to answer, and no traceback for aiohttp to log per
                # disconnect (a flood of them would be a flood of log lines).
                logger.debug("%s port: a client left mid-request", self.name)
                return web.Response(status=400)
            finally:
                if connection is not None:
                    kept = request.keep_alive and response is not None and response.keep_alive is not False
                    connection.request_finished(kept)

        return deadlines

    async def _within_body_timeout(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The handler, cancelled if the body has not all arrived `body_timeout` after the headers.

        Only a missing body cuts: once it is in, the handler's own work is never interrupted.
        """
        deadline = asyncio.timeout(None)
        check = asyncio.get_running_loop().call_later(self.limits.body_timeout, _cut_if_body_missing, request, deadline)
        try:
            async with deadline:
                return await handler(request)
        except TimeoutError:
            if not deadline.expired():
                raise
            self.count("body_timeout")
            text = f"request body not received within --body-timeout ({self.limits.body_timeout:g}s)\n"
            late = web.Response(status=408, text=text)
            late.force_close()
            return late
        finally:
            check.cancel()


def _cut_if_body_missing(request: web.Request, deadline: asyncio.Timeout) -> None:
    if not request.content.is_eof():
        deadline.reschedule(asyncio.get_running_loop().time())


class _Connection(asyncio.Protocol):
    """An HTTP connection: aiohttp's RequestHandler inside, the header deadline around it."""

    def __init__(self, listener: HttpListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.handler: RequestHandler | None = None
        self._in_request = False
        self._last_request = False  # answered with Connection: close; aiohttp may still read what the client sends
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.listener.admit(self):
            transport.abort()
            return
        self._expect_headers()

    def data_received(self, data: bytes) -> None:
        if self.handler is None:
            if self.transport is None or self.transport.is_closing():
                return
            # aiohttp's handler (a task and its timers) comes with the first byte: a connection that never
            # sends costs a transport and a timer, and closing it at the cap or the header deadline is cheap.
            self.handler = self.listener.handler()
            self.handler.connection_made(self.transport)
        elif not (self._in_request or self._last_request or self._header_deadline is not None):
            self._expect_headers()  # the first byte of the next request
        self.handler.data_received(data)

    def eof_received(self) -> None:
        if self.handler is not None:
            self.handler.eof_received()

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        self.listener.forget(self)
        if self.handler is not None:
            self.handler.connection_lost(exc)

    def request_started(self) -> None:
        self._in_request = True
        self._cancel_header_deadline()
        self.listener.busy(self)

    def request_finished(self, keep_alive: bool) -> None:
        self._in_request = False
        self._last_request = not keep_alive
        self.listener.waiting(self)

    def close(self) -> None:
        self._cancel_header_deadline()
        self.listener.forget(self)
        if self.transport is not None:
            self.transport.close()

    def _expect_headers(self) -> None:
        loop = asyncio.get_running_loop()
        self._header_deadline = loop.call_later(self.listener.limits.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._header_deadline = None
        if not self._in_request:
            self.listener.count("header_timeout")
            self.close()

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None


class _Site(web.BaseSite):
    """A TCP site whose connections go through the listener (aiohttp's TCPSite hands them to aiohttp directly)."""

    def __init__(
        self, runner: web.AppRunner, listener: HttpListener, host: str, port: int, ssl_context: SSLContext | None
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=ACCEPTS_PER_TICK)
        self._listener = listener
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._listener.connection,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=self._listener.limits.header_timeout if self._ssl_context else None,
        )
        for listening in self._server.sockets:
            with listening.dup() as same:  # the same socket: listen() again only deepens the kernel's queue
                same.listen(LISTEN_BACKLOG)


class AcceptErrors:
    """The event loop's exception handler for failed accept() calls on our HTTP ports.

    Each is counted; one line per port is logged every ACCEPT_LOG_EVERY seconds. Python 3.11's asyncio
    reports every failed accept() with a traceback and retries up to its backlog per loop tick: out of
    file descriptors, that was about 2,000 tracebacks a second. Anything else goes to the previous handler.
    """

    def __init__(self, errors: Counter, clock: Callable[[], float] = time.monotonic) -> None:
        self._errors = errors
        self._clock = clock
        self._names: dict[int, str] = {}
        self._logged: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None

    def watch(self, port: int, name: str) -> None:
        self._names[port] = name
        self._errors.labels(name)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._previous = loop, loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self) -> None:
        if self._loop is not None and self._loop.get_exception_handler() is self:
            self._loop.set_exception_handler(self._previous)
        self._loop = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        name = self._name_of(context) if context.get("message") == ACCEPT_FAILED else None
        if name is None:
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self._errors.labels(name).inc()
        now = self._clock()
        if now - self._logged.get(name, -ACCEPT_LOG_EVERY) < ACCEPT_LOG_EVERY:
            self._unlogged[name] = self._unlogged.get(name, 0) + 1
            return
        self._logged[name] = now
        logger.error(
            "cannot accept connections on the %s port: %s (%d more failed accept() calls since the last report; "
            "new connections wait until files are free: see --max-connections and RLIMIT_NOFILE)",
            name,
            context.get("exception"),
            self._unlogged.pop(name, 0),
        )

    def _name_of(self, context: dict[str, Any]) -> str | None:
        try:
            port = context["socket"].getsockname()[1]
        except (KeyError, AttributeError, IndexError, OSError, TypeError):
            return None
        return self._names.get(port)
