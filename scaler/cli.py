"""The `keda-llm-scaler` command: `serve` runs the scaler."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from scaler import __version__
from scaler.app import serve
from scaler.explain_text import explain_main
from scaler.logs import configure_logging
from scaler.settings import SettingsError, add_arguments, settings_from


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keda-llm-scaler", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the OTLP receivers and the KEDA external scaler")
    add_arguments(serve_parser)
    explain_parser = commands.add_parser("explain", help="show why each ScaledObject trigger has its value")
    explain_parser.add_argument("--scaler-url", default="http://127.0.0.1:8080", help="the scaler's ops HTTP URL")
    explain_parser.add_argument("--namespace", help="only this namespace")
    explain_parser.add_argument("--name", help="only this ScaledObject")
    for name, text in (
        ("demo", "the whole loop live on this machine: scaler, simulated P/D fleet, KEDA+HPA emulator, load"),
        ("evaluate", "replay a traffic trace in virtual time and compare scaling policies"),
        ("sim-pod", "one simulated vLLM pod"),
        ("sim-fleet", "simulated vLLM pods behind a router, optionally scaled by the KEDA+HPA emulator"),
    ):
        commands.add_parser(name, help=text, add_help=False)
    return parser


SIMULATION_COMMANDS = ("demo", "evaluate", "sim-pod", "sim-fleet")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SIMULATION_COMMANDS:
        sys.exit(_simulation(argv[0], argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            settings = settings_from(args, os.environ)
        except SettingsError as exc:
            parser.exit(2, f"keda-llm-scaler serve: error: {exc}\n")
        configure_logging(settings.log_format, settings.log_level)
        try:
            asyncio.run(serve(settings))
        except SettingsError as exc:
            parser.exit(2, f"keda-llm-scaler serve: error: {exc}\n")
        except OSError as exc:
            parser.exit(1, f"keda-llm-scaler serve: error: {exc}\n")
    elif args.command == "explain":
        sys.exit(explain_main(args.scaler_url, args.namespace, args.name))


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
