"""`serve` settings: parsed once at start-up into a frozen dataclass.

Each flag can also be set by the environment variable SCALER_<FLAG> (`--stale-after` ->
SCALER_STALE_AFTER). Precedence: command line, then environment, then default. A bad value stops
start-up with a message naming the flag.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scaler.durations import parse_duration


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the flag."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "0.0.0.0"
    otlp_grpc_port: int = 4317
    otlp_http_port: int = 4318
    scaler_port: int = 6000
    http_port: int = 8080
    retention: float = 120.0
    stale_after: float = 30.0
    warmup: float = 30.0
    max_series: int = 200_000
    log_format: str = "json"
    log_level: str = "info"
    grace: float = 5.0


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not a port number (0-65535; 0 picks a free port)")
    return value


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError("must be longer than 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"{text!r} is not one of {', '.join(options)}")
        return text

    return parse


def _host(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


# flag -> (parser, help); defaults come from Settings.
_FLAGS: dict[str, tuple[Callable[[str], Any], str]] = {
    "host": (_host, "address every listener binds to"),
    "otlp-grpc-port": (_port, "OTLP/gRPC receiver port"),
    "otlp-http-port": (_port, "OTLP/HTTP receiver port (POST /v1/metrics)"),
    "scaler-port": (_port, "KEDA ExternalScaler gRPC port (with health and reflection)"),
    "http-port": (_port, "ops HTTP port: /metrics, /healthz, /readyz, /debug/..."),
    "retention": (_positive_duration, "how long samples are kept, e.g. 120s"),
    "stale-after": (_positive_duration, "a series with no sample for this long is stale and excluded"),
    "warmup": (parse_duration, "after start-up, missing data is an error for this long [default: --stale-after]"),
    "max-series": (_positive_int, "hard cap on stored series; new series beyond it are refused"),
    "log-format": (_choice("json", "text"), "log line format"),
    "log-level": (_choice("debug", "info", "warning", "error"), "log level"),
    "grace": (parse_duration, "how long SIGTERM waits for in-flight calls"),
}


def env_name(flag: str) -> str:
    return "SCALER_" + flag.upper().replace("-", "_")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    for flag, (_, text) in _FLAGS.items():
        default = getattr(defaults, flag.replace("-", "_"))
        shown = "" if flag == "warmup" else f" [default: {default}]"
        parser.add_argument(f"--{flag}", default=None, metavar="VALUE", help=f"{text}{shown}; env {env_name(flag)}")


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Resolve flags over environment over defaults; raise SettingsError naming the flag."""
    values: dict[str, Any] = {}
    for flag, (parse, _) in _FLAGS.items():
        attr = flag.replace("-", "_")
        raw = getattr(args, attr, None)
        source = f"--{flag}"
        if raw is None and env_name(flag) in environ:
            raw, source = environ[env_name(flag)], f"--{flag} (from {env_name(flag)})"
        if raw is None:
            continue
        try:
            values[attr] = parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{source}: {exc}") from None
    if "warmup" not in values:
        values["warmup"] = values.get("stale_after", Settings().stale_after)
    settings = Settings(**values)
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    if settings.stale_after > settings.retention:
        raise SettingsError(
            f"--stale-after ({settings.stale_after:g}s) must not exceed --retention ({settings.retention:g}s): "
            "series would be freed before they are judged stale"
        )
    if settings.warmup < 0:
        raise SettingsError("--warmup: must not be negative")
    if settings.grace < 0:
        raise SettingsError("--grace: must not be negative")
    ports = [settings.otlp_grpc_port, settings.otlp_http_port, settings.scaler_port, settings.http_port]
    fixed = [p for p in ports if p]
    if len(fixed) != len(set(fixed)):
        raise SettingsError(f"ports must differ: {ports}")


def parse_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    parser = argparse.ArgumentParser(prog="keda-llm-scaler serve")
    add_arguments(parser)
    return settings_from(parser.parse_args(argv), environ)
