"""Two scaler replicas fed the same pushes, as manifests/examples/ha runs them: either one answers KEDA alike.

Three pods push vLLM gauges at their own phases through the real OpenTelemetry SDK exporter to real rotel
collectors, which forward over OTLP/gRPC to two `python -m scaler serve` processes; a KEDA client asks each
replica over its own channel, as KEDA would after a failover. Both answer the same sum within one export
interval; with one killed, the other keeps answering; the killed one, restarted on its ports (its stable
name), answers UNAVAILABLE "warming up" and then the same sum as the other, never a partial one.

rotel's agent takes one exporter per signal ("Only one exporter supported for ROTEL_EXPORTERS_METRICS"),
so the fan-out is one agent per replica and every pod exports each batch to both: what one collector with
two exporters does (collector-fanout.yaml), each leg with its own retries and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from load.scaler_process import ScalerProcess, terminate
from scaler.sim.otlp_push import make_exporter, push
from tests.integration.conftest import kserve_pod
from tests.keda_contract import KedaClient

INTERVAL = 1.0  # each pod's export interval, seconds
WARMUP = "3s"  # longer than INTERVAL plus the collector's batching, so a restart is caught inside it
SCALER_FLAGS = ("--warmup", WARMUP, "--stale-after", "5s")
DEADLINE = 20.0  # for any one expected answer
PODS = {"p1": 3.0, "p2": 5.0, "p3": 7.0}  # running requests at level 0; each level adds 1 per pod
QUERY = {"metricQuery": 'sum(vllm:num_requests_running{namespace="ns"})', "targetValue": "4"}


def rotel_agent() -> Path:
    """The collector binary the `rotel` package ships; skips when it cannot run here."""
    rotel = pytest.importorskip("rotel", reason="the rotel collector is not installed (pip install -e '.[dev]')")
    agent = Path(rotel.__file__).parent / "rotel-agent"
    try:
        subprocess.run([str(agent), "version"], capture_output=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"rotel's agent cannot run on this machine ({agent}: {exc})")
    return agent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def rotel(agent: Path, target: str, workdir: Path) -> Iterator[str]:
    """A rotel agent with an OTLP/gRPC receiver on loopback and one OTLP/gRPC exporter to `target`.

    Retries are short (the manifests' exporters give up after 15 s), so a batch for a replica that is down
    is dropped and the restarted one warms up on fresh pushes. Yields the receiver's address.
    """
    receiver = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "ROTEL_OTLP_GRPC_ENDPOINT": receiver,
        "ROTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "ROTEL_OTLP_RECEIVER_TRACES_DISABLED": "true",
        "ROTEL_OTLP_RECEIVER_LOGS_DISABLED": "true",
        "ROTEL_EXPORTER": "otlp",
        "ROTEL_OTLP_EXPORTER_ENDPOINT": f"http://{target}",
        "ROTEL_OTLP_EXPORTER_PROTOCOL": "grpc",
        "ROTEL_OTLP_EXPORTER_RETRY_INITIAL_BACKOFF": "100ms",
        "ROTEL_OTLP_EXPORTER_RETRY_MAX_BACKOFF": "500ms",
        "ROTEL_OTLP_EXPORTER_RETRY_MAX_ELAPSED_TIME": "2s",
        "ROTEL_PID_FILE": str(workdir / "rotel.pid"),
        "ROTEL_LOG_FILE": str(workdir / "rotel.log"),
    }
    command = [str(agent), "start"]
    setpriv = shutil.which("setpriv")
    if setpriv is not None:  # the agent gets SIGTERM if this test's process dies
        command = [setpriv, "--pdeathsig", "TERM", *command]
    log = workdir / "rotel.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_listener(receiver, proc, log)
        yield receiver
    finally:
        terminate(proc, timeout=10)


def _wait_for_listener(address: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=0.5):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"rotel did not listen on {address} (exit {proc.poll()}): {log.read_text()[-2000:]}")
        time.sleep(0.05)


@dataclass
class Pods:
    """Pods that each export every INTERVAL, at their own phase, to every collector in `receivers`."""

    receivers: list[str]
    level: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    failures: list[str] = field(default_factory=list)

    def expected(self) -> float:
        return sum(PODS.values()) + self.level * len(PODS)

    def run(self, pod: str, phase: float) -> None:
        exporters = [make_exporter("grpc", receiver, timeout=2.0) for receiver in self.receivers]
        start_ns = time.time_ns()
        next_at = time.monotonic() + phase
        try:
            while not self.stop.wait(max(0.0, next_at - time.monotonic())):
                next_at += INTERVAL
                metrics = [kserve_pod(pod, PODS[pod] + self.level)]
                for receiver, exporter in zip(self.receivers, exporters, strict=True):
                    if not push(exporter, metrics, time.time_ns(), start_ns):
                        self.failures.append(f"{pod} -> {receiver}")
        finally:
            for exporter in exporters:
                exporter.shutdown()

    @contextlib.contextmanager
    def pushing(self) -> Iterator[Pods]:
        phases = {pod: i * INTERVAL / len(PODS) for i, pod in enumerate(PODS)}
        threads = [threading.Thread(target=self.run, args=item, daemon=True) for item in phases.items()]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(10)


class Replica:
    """One scaler process and the KEDA client that asks it, over a channel that outlives restarts."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process = ScalerProcess(*SCALER_FLAGS, log=log).start()
        self.ports = dict(self.process.ports)
        self.channel = grpc.aio.insecure_channel(self.process.address("scaler"))
        self.keda = KedaClient(self.channel)
        self.ref = self.keda.ref(QUERY, name="vllm")

    def kill(self) -> None:
        """SIGKILL, as a lost node or an OOM kill ends it: no graceful shutdown."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.stop()  # reaps it

    def restart(self) -> None:
        """The same ports again: the collectors and KEDA find it under its stable name."""
        ports = ("--otlp-grpc-port", str(self.ports["otlp-grpc"]), "--scaler-port", str(self.ports["scaler"]))
        self.process = ScalerProcess(*SCALER_FLAGS, *ports, log=self.log).start()

    async def answer(self) -> float | grpc.aio.AioRpcError:
        """What KEDA reads: the value, or the error it would count against the fallback threshold."""
        try:
            return await self.keda.value(self.ref)
        except grpc.aio.AioRpcError as exc:
            return exc

    async def close(self) -> None:
        await self.channel.close(None)
        self.process.stop()


@contextlib.asynccontextmanager
async def replicas(workdir: Path) -> AsyncIterator[tuple[Replica, Replica]]:
    started: list[Replica] = []
    try:
        for name in ("0", "1"):
            started.append(Replica(workdir / f"scaler-{name}.log"))
        yield started[0], started[1]
    finally:
        for replica in started:
            await replica.close()


async def first_seen(replicas: tuple[Replica, ...], want: float) -> list[float]:
    """When (monotonic) each replica first answers `want`, polling them in turn as KEDA's calls would."""
    seen: dict[int, float] = {}
    last: dict[int, Any] = {}
    deadline = time.monotonic() + DEADLINE
    while len(seen) < len(replicas):
        for index, replica in enumerate(replicas):
            if index not in seen:
                last[index] = await replica.answer()
                if last[index] == want:
                    seen[index] = time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"not every replica answered {want:g} within {DEADLINE:g}s; last answers {last}")
        await asyncio.sleep(0.05)
    return [seen[i] for i in range(len(replicas))]


def _is_warming_up(answer: object) -> bool:
    return (
        isinstance(answer, grpc.aio.AioRpcError)
        and answer.code() == grpc.StatusCode.UNAVAILABLE
        and "warming up" in (answer.details() or "")
    )


async def test_two_replicas_answer_alike_survive_a_kill_and_warm_up_after_a_restart(tmp_path: Path) -> None:
    agent = rotel_agent()
    async with replicas(tmp_path) as (first, second), contextlib.AsyncExitStack() as stack:
        receivers = []
        for index, replica in enumerate((first, second)):
            workdir = tmp_path / f"rotel-{index}"
            workdir.mkdir()
            receivers.append(stack.enter_context(rotel(agent, replica.process.address("otlp-grpc"), workdir)))
        pods = stack.enter_context(Pods(receivers).pushing())

        # Both replicas store every pod's pushes: the same sum once both have warmed up (each from its own
        # start), then the same change within one interval.
        await first_seen((first, second), pods.expected())
        apart = []
        for level in (1, 2):
            pods.level = level
            at_first, at_second = await first_seen((first, second), pods.expected())
            apart.append(at_second - at_first)
            assert abs(apart[-1]) <= INTERVAL, f"level {level}: {apart[-1]:+.2f}s apart"

        # A killed replica answers nothing (KEDA sees UNAVAILABLE on its connection); the other goes on.
        second.kill()
        pods.level = 3
        await first_seen((first,), pods.expected())
        answers = []
        for _ in range(30):  # three intervals
            answers.append(await first.answer())
            await asyncio.sleep(INTERVAL / 10)
        assert answers == [pods.expected()] * len(answers), "the surviving replica faltered"
        down = await second.answer()
        assert isinstance(down, grpc.aio.AioRpcError) and down.code() == grpc.StatusCode.UNAVAILABLE

        # Restarted under its stable name, it answers "warming up" until every pod had its chance, then the
        # full sum the other answers; never a partial sum, never 0.
        second.restart()
        restarted = time.monotonic()
        timeline: list[tuple[float, object]] = []
        while not timeline or isinstance(timeline[-1][1], grpc.aio.AioRpcError):
            timeline.append((time.monotonic() - restarted, await second.answer()))
            assert timeline[-1][0] < DEADLINE, f"no value {DEADLINE:g}s after the restart: {timeline[-1][1]}"
            await asyncio.sleep(0.05)
        errors = [answer for _, answer in timeline[:-1]]
        assert any(_is_warming_up(e) for e in errors), f"never warming up: {errors[:3]}"
        assert all(isinstance(e, grpc.aio.AioRpcError) and e.code() == grpc.StatusCode.UNAVAILABLE for e in errors)
        first_value = timeline[-1][1]
        assert first_value == pods.expected() == await first.answer()
        warming = [t for t, answer in timeline if _is_warming_up(answer)]
        print(
            f"\nrestarted replica: UNAVAILABLE warming up from {warming[0]:.2f}s to {warming[-1]:.2f}s, "
            f"first value {first_value:g} at {timeline[-1][0]:.2f}s (warm-up {WARMUP})"
        )

        # And both follow the next change together again.
        pods.level = 4
        at_first, at_second = await first_seen((first, second), pods.expected())
        apart.append(at_second - at_first)
        assert abs(apart[-1]) <= INTERVAL, f"after the restart: {apart[-1]:+.2f}s apart"
        print("the second replica saw each change " + ", ".join(f"{a:+.2f}s" for a in apart) + " after the first")
        assert not pods.failures, f"collectors refused pushes: {pods.failures[:5]}"
