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
    return parser


def main(argv: Sequence[str] | None = None) -> None:
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
