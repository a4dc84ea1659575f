"""Entry points for the simulator, meant as `keda-llm-scaler` subcommands: `pod_main` and `fleet_main`.

    pod_main(["--profile", "demo", "--port", "8000", "--otlp-endpoint", "127.0.0.1:4317"])
    fleet_main(["--profile", "demo", "--replicas", "1", "--keda", "127.0.0.1:6000",
                "--otlp-endpoint", "127.0.0.1:4317"])

Both run until SIGTERM or SIGINT. Durations are written like `500ms`, `30s`, `5m`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine, Sequence
from typing import Any

import grpc

from scaler.durations import duration_argument
from scaler.sim.fleet_server import FleetOptions, LiveFleet
from scaler.sim.fleet_spec import FleetSpec, PoolSpec
from scaler.sim.keda import KedaHpaEmulator, ScaledObject, Trigger
from scaler.sim.keda_grpc import GrpcScaler, run_emulator
from scaler.sim.pod import ROLES, PodIdentity
from scaler.sim.pod_server import PodConfig, PodServer
from scaler.sim.profiles import DEFAULT_PROFILE, PROFILES, HardwareProfile, profile_named
from scaler.sim.vllm_metrics import MetricNaming, vllm_version


def _duration(text: str) -> float:
    """argparse `type=`: its message, not argparse's "invalid _duration value", reaches the user."""
    return duration_argument(text)


def _profile(text: str) -> HardwareProfile:
    try:
        return profile_named(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port; 0 picks one [8000]")
    parser.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "default"))
    parser.add_argument("--model", default="qwen", help="served model name [qwen]")
    parser.add_argument(
        "--profile", type=_profile, default=profile_named(DEFAULT_PROFILE), help=f"one of {', '.join(PROFILES)}"
    )
    parser.add_argument("--otlp-endpoint", help="push metrics here, e.g. 127.0.0.1:4317 (grpc) or http://...:4318")
    parser.add_argument("--otlp-protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--export-interval", type=_duration, default=1.0, help="OTLP push period [1s]")
    parser.add_argument("--dotted-names", action="store_true", help="push vllm.x instead of vllm:x")
    parser.add_argument(
        "--vllm-version",
        type=_vllm_version,
        default="0.33",
        help="export as this vLLM did: 0.33 [default], 0.10 or legacy (both KV-cache names), 0.6",
    )
    parser.add_argument("--legacy-names", action="store_true", help="the same as --vllm-version 0.6")
    parser.add_argument("--output-median", type=float, default=256.0, help="median reply length in tokens [256]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")


def _naming(args: argparse.Namespace) -> MetricNaming:
    return MetricNaming(dotted=args.dotted_names, version="0.6" if args.legacy_names else args.vllm_version)


def _vllm_version(text: str) -> str:
    try:
        return vllm_version(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def pod_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keda-llm-scaler sim-pod", description="one simulated vLLM pod")
    _common(parser)
    parser.add_argument("--pod-name", default=os.environ.get("POD_NAME", "sim-pod-0"))
    parser.add_argument("--deployment", default="qwen-predictor")
    parser.add_argument("--role", choices=ROLES, default="unified")
    parser.add_argument("--data-parallel-size", type=int, default=1, help="engines in the pod [1]")
    return parser


def pod_main(argv: Sequence[str] | None = None) -> None:
    args = pod_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    identity = PodIdentity(args.pod_name, args.deployment, args.namespace, args.role, args.model)
    config = PodConfig(
        identity,
        args.profile,
        args.host,
        args.port,
        args.data_parallel_size,
        args.otlp_endpoint,
        args.otlp_protocol,
        args.export_interval,
        _naming(args),
        args.output_median,
        args.seed,
    )

    async def run() -> None:
        server = PodServer(config)
        await server.start()
        print(f"pod {identity.pod} serving on {server.url}", file=sys.stderr, flush=True)
        try:
            await _until_signalled()
        finally:
            await server.stop()

    _run(run())


def fleet_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keda-llm-scaler sim-fleet", description="simulated vLLM pods behind a least-outstanding router"
    )
    _common(parser)
    parser.add_argument("--deployment", default="qwen-predictor", help="unified pool's name [qwen-predictor]")
    parser.add_argument("--replicas", type=int, default=1, help="ready pods at start [1]")
    parser.add_argument("--pd", action="store_true", help="prefill/decode pools instead of one unified pool")
    parser.add_argument("--prefill-replicas", type=int, default=1)
    parser.add_argument("--decode-replicas", type=int, default=1)
    parser.add_argument("--data-parallel-size", type=int, default=1, help="engines per pod [1]")
    parser.add_argument("--cold-start", type=_duration, default=60.0, help="scale-up to serving [60s]")
    parser.add_argument("--drain-grace", type=_duration, default=30.0, help="terminationGracePeriod [30s]")
    keda = parser.add_argument_group("KEDA + HPA emulator (needs --keda)")
    keda.add_argument("--keda", metavar="HOST:PORT", help="the scaler's KEDA ExternalScaler gRPC address")
    keda.add_argument("--metric", default="vllm:num_requests_running", help="metric summed per deployment")
    keda.add_argument("--target", type=float, default=4.0, help="targetValue per replica [4]")
    keda.add_argument("--metric-type", choices=("AverageValue", "Value"), default="AverageValue")
    keda.add_argument("--min-replicas", type=int, default=1, help="minReplicaCount [1]")
    keda.add_argument("--max-replicas", type=int, default=5, help="maxReplicaCount [5]")
    keda.add_argument("--polling-interval", type=_duration, default=30.0, help="[30s]")
    keda.add_argument("--cooldown-period", type=_duration, default=300.0, help="[300s]")
    keda.add_argument("--no-push", action="store_true", help="do not hold StreamIsActive open")
    return parser


def fleet_spec_from(args: argparse.Namespace) -> FleetSpec:
    dp = args.data_parallel_size
    if args.pd:
        pools: tuple[PoolSpec, ...] = (
            PoolSpec(f"{args.deployment}-prefill", "prefill", args.profile, args.prefill_replicas, dp),
            PoolSpec(f"{args.deployment}-decode", "decode", args.profile, args.decode_replicas, dp),
        )
    else:
        pools = (PoolSpec(args.deployment, "unified", args.profile, args.replicas, dp),)
    return FleetSpec(pools, args.namespace, args.model, args.cold_start, args.drain_grace)


def kserve_scaledobject(args: argparse.Namespace, namespace: str, deployment: str) -> ScaledObject:
    """The ScaledObject KServe generates for a PodMetric on the OTel backend, for one deployment."""
    metadata = {
        "scalerAddress": args.keda,
        "metricQuery": f'sum({args.metric}{{namespace="{namespace}", deployment="{deployment}"}})',
        "targetValue": f"{args.target:f}",
    }
    return ScaledObject(
        namespace,
        deployment,
        (Trigger.of(metadata, args.metric_type),),
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        polling_interval=args.polling_interval,
        cooldown_period=args.cooldown_period,
    )


def fleet_main(argv: Sequence[str] | None = None) -> None:
    args = fleet_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    spec = fleet_spec_from(args)
    options = FleetOptions(
        args.host,
        args.port,
        args.otlp_endpoint,
        args.otlp_protocol,
        args.export_interval,
        _naming(args),
        args.output_median,
        args.seed,
    )

    async def run() -> None:
        fleet = LiveFleet(spec, options)
        await fleet.start()
        print(f"fleet router on {fleet.url}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        emulators: list[asyncio.Task[None]] = []
        channel = grpc.aio.insecure_channel(args.keda) if args.keda else None
        if channel is not None:
            scaler = GrpcScaler(channel)
            for pool in spec.pools:
                so = kserve_scaledobject(args, spec.namespace, pool.deployment)
                emulator = KedaHpaEmulator(so, time.monotonic())
                target = fleet.target(pool.deployment)
                loop = run_emulator(emulator, scaler, target, time.monotonic, stop, not args.no_push)
                emulators.append(asyncio.create_task(loop))
        try:
            await _until_signalled()
        finally:
            stop.set()
            await asyncio.gather(*emulators)
            if channel is not None:
                await channel.close(None)
            await fleet.stop()

    _run(run())


async def _until_signalled() -> None:
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        asyncio.run(main)
    except OSError as exc:
        sys.exit(f"error: {exc}")
