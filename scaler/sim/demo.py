"""`keda-llm-scaler demo`: the whole loop on one machine, live, over real sockets on 127.0.0.1.

It starts the scaler, a prefill and a decode pool of simulated vLLM pods behind a gateway, all
pushing OTLP to it, a KEDA+HPA emulator per pool asking the scaler over gRPC, and streaming chat
clients with a burst. Every few seconds it prints a table with the signal driving each pool's
recommendation; at the end, a summary (what drove each peak, what happened after the burst) and a
PNG of load, replicas and latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp
import grpc

from scaler.app import Scaler, start
from scaler.durations import duration_argument, positive_duration_argument
from scaler.settings import Settings
from scaler.sim.demo_plan import (
    DECODE,
    MODEL,
    NAMESPACE,
    PREFILL,
    DemoPlan,
    PoolRow,
    RequestRecord,
    Row,
    Summary,
    driving_signal,
    format_row,
    header,
    row_for,
    scaled_objects,
    summarize,
)
from scaler.sim.fleet_server import FleetOptions, LiveFleet
from scaler.sim.fleet_spec import FleetSpec, PoolSpec
from scaler.sim.keda import KedaHpaEmulator
from scaler.sim.keda_grpc import GrpcScaler, run_emulator
from scaler.sim.ours import fleet_flow_control
from scaler.sim.profiles import profile_named

SAMPLE_EVERY = 0.5


class Clients:
    """Streaming chat clients, as many at any moment as the plan says; each records what it saw."""

    def __init__(self, url: str, plan: DemoPlan, clock: Callable[[], float], seed: int) -> None:
        self.url = url.rstrip("/") + "/v1/chat/completions"
        self.plan = plan
        self.clock = clock
        self.rng = random.Random(seed)
        self.records: list[RequestRecord] = []
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        try:
            while not stop.is_set():
                wanted = self.plan.clients_at(self.clock())
                for index in range(wanted):
                    if index not in self._tasks or self._tasks[index].done():
                        self._tasks[index] = asyncio.create_task(self._client(index, stop))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            await self._session.close()

    async def _client(self, index: int, stop: asyncio.Event) -> None:
        while not stop.is_set() and index < self.plan.clients_at(self.clock()):
            self.records.append(await self._one())

    async def _one(self) -> RequestRecord:
        assert self._session is not None
        words = max(1, int(self.rng.lognormvariate(0, 0.5) * self.plan.prompt_tokens))
        body = {
            "model": "qwen",
            "messages": [{"role": "user", "content": "tell me about colours " * (words // 5 + 1)}],
            "max_tokens": self.plan.max_tokens,
            "stream": True,
        }
        started = self.clock()
        stamps: list[float] = []
        try:
            async with self._session.post(self.url, json=body) as reply:
                if reply.status != 200:
                    await reply.read()
                    return RequestRecord(started, False)
                async for line in reply.content:
                    text = line.decode().strip()
                    if text.startswith("data:") and text != "data: [DONE]" and _has_content(text[5:]):
                        stamps.append(self.clock())
        except (aiohttp.ClientError, TimeoutError):
            return RequestRecord(started, False)
        if not stamps:
            return RequestRecord(started, False)
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        itl = sum(gaps) / len(gaps) if gaps else None
        return RequestRecord(started, True, stamps[0] - started, itl)


def _has_content(payload: str) -> bool:
    try:
        chunk = json.loads(payload)
    except ValueError:
        return False
    choices = chunk.get("choices") or [{}]
    return bool(choices[0].get("delta", {}).get("content"))


def pool_rows(fleet: LiveFleet, scaler: Scaler) -> dict[str, PoolRow]:
    decisions = {s.key.name: s.decision for s in scaler.triggers.states() if s.key.namespace == NAMESPACE}
    rows = {}
    for pool in (PREFILL, DECODE):
        target = fleet.target(pool)
        decision = decisions.get(pool)
        if decision is None:
            rows[pool] = PoolRow(target.replicas(), target.ready(), None, "")
        else:
            rows[pool] = PoolRow(
                target.replicas(), target.ready(), decision.replicas, decision.reason, driving_signal(decision)
            )
    return rows


async def run_demo(plan: DemoPlan, out: Path, seed: int = 0, echo: Callable[[str], None] = print) -> Summary:
    settings = Settings(
        host="127.0.0.1",
        otlp_grpc_port=0,
        otlp_http_port=0,
        scaler_port=0,
        http_port=0,
        stale_after=max(5.0, 5 * plan.export_interval),
        warmup=0.0,
    )
    scaler = await start(settings)
    profile = profile_named("demo")
    spec = FleetSpec(
        (PoolSpec(PREFILL, "prefill", profile, 1), PoolSpec(DECODE, "decode", profile, 1)),
        NAMESPACE,
        MODEL,
        cold_start=plan.seconds(plan.cold_start),
        drain_grace=plan.seconds(10),
        flow_control=fleet_flow_control(plan.gateway_demand),
    )
    otlp = f"127.0.0.1:{scaler.ports['otlp-grpc']}"
    fleet = LiveFleet(spec, FleetOptions(otlp_endpoint=otlp, export_interval=plan.export_interval, seed=seed))
    await fleet.start()
    address = f"127.0.0.1:{scaler.ports['scaler']}"
    channel = grpc.aio.insecure_channel(address)
    t0 = time.monotonic()

    def clock() -> float:
        return time.monotonic() - t0

    stop = asyncio.Event()
    keda = GrpcScaler(channel)
    tasks = [
        asyncio.create_task(run_emulator(KedaHpaEmulator(so, clock()), keda, fleet.target(so.name), clock, stop))
        for so in scaled_objects(plan, address)
    ]
    clients = Clients(fleet.url, plan, clock, seed)
    tasks.append(asyncio.create_task(clients.run(stop)))
    echo(f"scaler: otlp {otlp}, keda {address}, ops http://127.0.0.1:{scaler.ports['http']}; fleet {fleet.url}")
    echo(f"a {plan.run_seconds:.0f}s run: {plan.base_clients} clients, {plan.burst_clients} from "
         f"{plan.seconds(plan.burst_start):.0f}s to {plan.seconds(plan.burst_end):.0f}s")  # fmt: skip
    echo(header())
    timeline: list[tuple[float, dict[str, PoolRow]]] = []
    rows: list[Row] = []
    try:
        last_report, seen = 0.0, 0
        while clock() < plan.run_seconds:
            await asyncio.sleep(SAMPLE_EVERY)
            now = clock()
            pools = pool_rows(fleet, scaler)
            timeline.append((now, pools))
            if now - last_report >= plan.seconds(plan.report_every):
                finished = clients.records[seen:]
                seen = len(clients.records)
                rows.append(row_for(now, plan.clients_at(now), last_report, finished, pools))
                echo(format_row(rows[-1]))
                last_report = now
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await channel.close(None)
        await fleet.stop()
        await scaler.stop()
    summary = summarize(plan, timeline, clients.records)
    for line in summary.lines():
        echo(line)
    out.mkdir(parents=True, exist_ok=True)
    plot_path = out / "demo.png"
    plot(plan, timeline, rows, plot_path)
    echo(f"plot: {plot_path}")
    return summary


def plot(plan: DemoPlan, timeline: Sequence[tuple[float, dict[str, PoolRow]]], rows: Sequence[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (load, replicas, latency) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    times = [t for t, _ in timeline]
    load.step(times, [plan.clients_at(t) for t in times], where="post", label="concurrent clients")
    load.plot([r.t for r in rows], [r.completed_per_s for r in rows], marker="o", label="completed req/s")
    load.set_ylabel("load")
    load.legend(loc="upper right")
    for pool, colour in ((PREFILL, "tab:blue"), (DECODE, "tab:orange")):
        replicas.step(
            times, [p[pool].replicas for _, p in timeline], where="post", color=colour, label=f"{pool} replicas"
        )
        replicas.step(times, [p[pool].ready for _, p in timeline], where="post", color=colour, linestyle=":",
                      label=f"{pool} ready")  # fmt: skip
        recs = [(t, p[pool].recommendation) for t, p in timeline if p[pool].recommendation is not None]
        replicas.plot([t for t, _ in recs], [r for _, r in recs], color=colour, alpha=0.4, linestyle="--",
                      label=f"{pool} recommendation")  # fmt: skip
    replicas.set_ylabel("pods")
    replicas.legend(loc="upper right", fontsize="small")
    latency.plot([r.t for r in rows], [r.ttft_p90 for r in rows], marker="o", label="TTFT p90 (s)")
    latency.plot([r.t for r in rows], [r.itl_p90 for r in rows], marker="x", label="ITL p90 (s)")
    latency.set_yscale("log")
    latency.set_ylabel("seconds")
    latency.set_xlabel("seconds into the run")
    latency.legend(loc="upper right")
    for axis in (load, replicas, latency):
        axis.axvspan(plan.seconds(plan.burst_start), plan.seconds(plan.burst_end), color="grey", alpha=0.1)
    figure.suptitle("keda-llm-scaler demo: prefill and decode pools scaled by policy triggers")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keda-llm-scaler demo", description=__doc__)
    parser.add_argument("--duration", type=positive_duration_argument, default=180.0, help="length of the run [180s]")
    parser.add_argument(
        "--speed",
        type=_positive_number,
        default=1.0,
        help="run the control plane (polling, windows, cold start, burst schedule) this many times faster; "
        "the engines keep real time, so latencies stay faithful [1]",
    )
    parser.add_argument("--base-clients", type=_at_least(0), default=2, help="concurrent clients outside the burst [2]")
    parser.add_argument(
        "--burst-clients", type=_at_least(1), default=24, help="concurrent clients during the burst [24]"
    )
    parser.add_argument("--cold-start", type=duration_argument, default=15.0, help="model load of a new pod [15s]")
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="where the plot goes [demo-out]")
    parser.add_argument(
        "--no-gateway-demand",
        dest="gateway_demand",
        action="store_false",
        help="the prefill pool does not read the gateway's queue, and the gateway holds nothing",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; expected e.g. 1 or 4.5") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


def _at_least(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


def demo_main(argv: Sequence[str] | None = None) -> int:
    args = demo_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    burst_end = min(90.0, args.duration * 0.5)
    plan = DemoPlan(
        duration=args.duration,
        speed=args.speed,
        base_clients=args.base_clients,
        burst_clients=args.burst_clients,
        burst_start=min(30.0, args.duration / 6),
        burst_end=burst_end,
        cold_start=args.cold_start,
        gateway_demand=args.gateway_demand,
    )
    asyncio.run(run_demo(plan, args.out, args.seed))
    return 0
