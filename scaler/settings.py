"""`serve` settings: parsed once at start-up into a frozen dataclass.

Each flag can also be set by the environment variable SCALER_<FLAG> (`--stale-after` ->
SCALER_STALE_AFTER). Precedence: command line, then environment, then default. A bad value stops
start-up with a message naming the flag.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scaler.durations import format_duration, parse_duration


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
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    otlp_token_file: str | None = None
    isolate_namespaces: bool = False
    max_request_bytes: int = 16 * 1024 * 1024
    max_datapoints_per_request: int = 200_000
    max_labels_per_series: int = 64
    max_label_length: int = 2048
    max_push_rate: float = 1_000_000.0
    max_buckets_per_point: int = 200
    max_inflight_bytes: int = 64 * 1024 * 1024
    stream_resend: float = 5.0
    ops_token_file: str | None = None
    max_triggers: int = 10_000
    max_connections: int = 4096
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 120.0
    max_streams: int = 10_000

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def _integer(text: str, expected: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not {expected}") from None


def _port(text: str) -> int:
    expected = "a port number: expected an integer 0-65535 (0 picks a free port)"
    value = _integer(text, expected)
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not {expected}")
    return value


def _duration(text: str) -> float:
    return parse_duration(text)


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError(f"must be longer than 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _integer(text, "a whole number: expected an integer of at least 1")
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"{text!r} is not one of {', '.join(options)}")
        return text

    return parse


def _readable_file(text: str) -> str:
    path = text.strip()
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    return path


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (true or false)")


_SIZE_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1000, "mb": 1000**2}


def _size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size: use bytes or a unit like 512KiB or 16MiB")
    value = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if value < 1024:
        raise ValueError(f"must be at least 1KiB, got {text!r}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number: expected datapoints per second, e.g. 50000 (0 is off)") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"must be a finite number >= 0 (0 turns the limit off), got {text!r}")
    return value


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
    "retention": (_positive_duration, "how long samples are kept; also the default query window"),
    "stale-after": (_positive_duration, "a series with no sample for this long is stale and excluded"),
    "warmup": (_duration, "after start-up, every trigger answers UNAVAILABLE for this long (partial sums otherwise)"),
    "max-series": (_positive_int, "hard cap on stored series; new series beyond it are refused"),
    "log-format": (_choice("json", "text"), "log line format"),
    "log-level": (_choice("debug", "info", "warning", "error"), "log level"),
    "grace": (_duration, "how long SIGTERM waits for in-flight calls"),
    "tls-cert": (_readable_file, "PEM certificate: serve TLS on the scaler and both OTLP ports (reloaded on change)"),
    "tls-key": (_readable_file, "PEM private key for --tls-cert"),
    "tls-client-ca": (_readable_file, "PEM CA bundle: require client certificates it signed (mTLS)"),
    "otlp-token-file": (_readable_file, "bearer tokens for OTLP pushes, one per line, each optionally + namespace"),
    "isolate-namespaces": (_boolean, "a ScaledObject reads only series labelled with its own namespace"),
    "max-request-bytes": (_size, "largest OTLP request accepted, after decompression"),
    "max-datapoints-per-request": (_positive_int, "largest OTLP request accepted, in datapoints"),
    "max-labels-per-series": (_positive_int, "points with more labels (resource + point attributes) are refused"),
    "max-label-length": (_positive_int, "points with a longer label name or value are refused"),
    "max-push-rate": (_rate, "datapoints per second per token (per peer without tokens); 0 is unlimited"),
    "max-buckets-per-point": (
        _positive_int,
        "points with more histogram buckets (per sign, for exponential ones) or summary quantiles are refused",
    ),
    "max-inflight-bytes": (_size, "request bytes held at once over all OTLP requests; beyond it, 429 at once"),
    "stream-resend": (
        _positive_duration,
        "while a trigger is active, StreamIsActive repeats `true` this often (KEDA drops one it cannot place yet)",
    ),
    "ops-token-file": (
        _readable_file,
        "bearer tokens for /debug/* on the ops port, one per line, each optionally + the only namespace it sees",
    ),
    "max-triggers": (_positive_int, "remembered trigger states; a new ScaledObject trigger beyond it is refused"),
    "max-connections": (
        _positive_int,
        "open connections per port (lowered to fit the open-file limit); at it, an HTTP port closes its "
        "longest-idle connection for a new one and a gRPC port refuses new ones",
    ),
    "header-timeout": (
        _positive_duration,
        "a request's headers must arrive within this of its first byte (of connecting, for the first); "
        "on gRPC ports, the TLS and HTTP/2 handshake",
    ),
    "body-timeout": (_positive_duration, "an HTTP request's body must arrive within this of its headers: else 408"),
    "idle-timeout": (_positive_duration, "a connection with no request or call in flight for this long is closed"),
    "max-streams": (
        _positive_int,
        "concurrent calls (HTTP/2 streams, StreamIsActive included) on the scaler port; beyond it RESOURCE_EXHAUSTED",
    ),
}
_BOOLEAN_FLAGS = frozenset({"isolate-namespaces"})


def env_name(flag: str) -> str:
    return "SCALER_" + flag.upper().replace("-", "_")


def shown_default(flag: str) -> str:
    """A flag's default as the README writes it: `120s`, `16MiB`, `false`, `none`."""
    if flag == "warmup":
        return "--stale-after"
    parse = _FLAGS[flag][0]
    value = getattr(Settings(), flag.replace("-", "_"))
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if parse in (_duration, _positive_duration):
        return format_duration(value)
    if parse is _size:
        return format_size(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, (_, text) in _FLAGS.items():
        help_text = f"{text} [default: {shown_default(flag)}]; env {env_name(flag)}"
        if flag in _BOOLEAN_FLAGS:
            parser.add_argument(f"--{flag}", default=None, nargs="?", const="true", metavar="BOOL", help=help_text)
        else:
            parser.add_argument(f"--{flag}", default=None, metavar="VALUE", help=help_text)


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
    if settings.max_inflight_bytes < settings.max_request_bytes:
        raise SettingsError(
            f"--max-inflight-bytes ({format_size(settings.max_inflight_bytes)}) must be at least --max-request-bytes "
            f"({format_size(settings.max_request_bytes)}): a request of the largest size could never be read"
        )
    if settings.warmup < 0:
        raise SettingsError("--warmup: must not be negative")
    if settings.grace < 0:
        raise SettingsError("--grace: must not be negative")
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise SettingsError("--tls-cert and --tls-key go together: set both or neither")
    if settings.tls_client_ca is not None and settings.tls_cert is None:
        raise SettingsError("--tls-client-ca needs --tls-cert and --tls-key: client certificates need TLS")
    ports = [settings.otlp_grpc_port, settings.otlp_http_port, settings.scaler_port, settings.http_port]
    fixed = [p for p in ports if p]
    if len(fixed) != len(set(fixed)):
        raise SettingsError(f"ports must differ: {ports}")


_DASH_VALUE = re.compile(r"-\.?\d")


def attach_dash_values(argv: Sequence[str]) -> list[str]:
    """`--warmup -1s` as `--warmup=-1s`: argparse would take `-1s` for a flag and say "expected one argument".

    Only a value that starts like a negative number is attached, and only to a long option given
    without `=`, so the value is then judged (and refused, naming the flag) by the flag's own parser.
    """
    out: list[str] = []
    for token in argv:
        previous = out[-1] if out else ""
        if _DASH_VALUE.match(token) and previous.startswith("--") and "=" not in previous and previous != "--":
            out[-1] = f"{previous}={token}"
        else:
            out.append(token)
    return out


def parse_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    parser = argparse.ArgumentParser(prog="keda-llm-scaler serve")
    add_arguments(parser)
    return settings_from(parser.parse_args(attach_dash_values(argv)), environ)
