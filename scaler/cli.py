"""The `keda-llm-scaler` command: `serve` runs the scaler; `explain` and `ask` question a running one."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from scaler import __version__, keda_client
from scaler.app import serve
from scaler.explain_text import explain_main, ops_url
from scaler.logs import configure_logging
from scaler.settings import SettingsError, add_arguments, attach_dash_values, settings_from

SIMULATION_COMMANDS = ("demo", "evaluate", "sim-pod", "sim-fleet")


def build_parser() -> argparse.ArgumentParser:
    return _parsers()[0]


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser, and each command's own (so that its errors show its usage, not the top's)."""
    parser = argparse.ArgumentParser(prog="keda-llm-scaler", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    own: dict[str, argparse.ArgumentParser] = {}
    text = "run the OTLP receivers and the KEDA external scaler"
    own["serve"] = commands.add_parser("serve", help=text, description=text)
    add_arguments(own["serve"])
    text = "show why each ScaledObject trigger has its value (from /debug/scaledobjects)"
    own["explain"] = explain = commands.add_parser("explain", help=text, description=text)
    explain.add_argument(
        "--scaler-url",
        type=ops_url,
        default="http://127.0.0.1:8080",
        help="the scaler's ops HTTP address [%(default)s]",
    )
    explain.add_argument("--namespace", help="only this namespace")
    explain.add_argument("--name", help="only this ScaledObject")
    text = "ask a scaler as KEDA does: GetMetricSpec, GetMetrics, IsActive and, with --watch, StreamIsActive"
    own["ask"] = commands.add_parser("ask", help=text, description=text)
    keda_client.add_arguments(own["ask"])
    for name, text in (
        ("demo", "the whole loop live on this machine: scaler, simulated P/D fleet, KEDA+HPA emulator, load"),
        ("evaluate", "replay a traffic trace in virtual time and compare scaling policies"),
        ("sim-pod", "one simulated vLLM pod"),
        ("sim-fleet", "simulated vLLM pods behind a router, optionally scaled by the KEDA+HPA emulator"),
    ):
        commands.add_parser(name, help=text, add_help=False)
    return parser, own


def main(argv: Sequence[str] | None = None) -> None:
    argv = attach_dash_values(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SIMULATION_COMMANDS:
        sys.exit(_simulation(argv[0], argv[1:]))
    parser, own = _parsers()
    if not argv or argv[0] not in own:
        parser.parse_args(argv)  # --help, --version, or an error naming the unknown command
        return
    command, command_parser = argv[0], own[argv[0]]
    args = command_parser.parse_args(argv[1:])
    if command == "serve":
        _serve(command_parser, args)
    elif command == "explain":
        sys.exit(explain_main(args.scaler_url, args.namespace, args.name))
    else:
        sys.exit(keda_client.ask_main(args))


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    try:
        settings = settings_from(args, os.environ)
    except SettingsError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    configure_logging(settings.log_format, settings.log_level)
    try:
        asyncio.run(serve(settings))
    except SettingsError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    except OSError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")


def _simulation(command: str, argv: list[str]) -> int:
    """The simulator's commands parse their own flags and need the `[sim]` extra."""
    try:
        if command == "demo":
            from scaler.sim.demo import demo_main

            return demo_main(argv)
        if command == "evaluate":
            from scaler.sim.evaluate import evaluate_main  # type: ignore[import-untyped,unused-ignore]

            code: int = evaluate_main(argv)
            return code
        from scaler.sim.cli import fleet_main, pod_main

        (pod_main if command == "sim-pod" else fleet_main)(argv)
        return 0
    except ModuleNotFoundError as exc:
        print(
            f"keda-llm-scaler {command}: needs the simulation extra: pip install -e '.[sim]' ({exc})", file=sys.stderr
        )
        return 2
