"""`serve` settings: flag over environment over default, and errors that name the flag."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from scaler.settings import Settings, SettingsError, add_arguments, env_name, parse_settings


def test_defaults() -> None:
    settings = parse_settings([], {})
    assert settings == Settings()
    assert (settings.host, settings.otlp_grpc_port, settings.otlp_http_port) == ("0.0.0.0", 4317, 4318)
    assert (settings.scaler_port, settings.http_port) == (6000, 8080)
    assert (settings.retention, settings.stale_after, settings.warmup) == (120.0, 30.0, 30.0)
    assert (settings.max_series, settings.log_format, settings.log_level, settings.grace) == (
        200_000,
        "json",
        "info",
        5.0,
    )
    assert settings.tls is False


def test_every_setting_has_a_flag() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert set(vars(parser.parse_args([]))) == {f.name for f in dataclasses.fields(Settings)}


@pytest.mark.parametrize(
    ("flag", "env"),
    [("stale-after", "SCALER_STALE_AFTER"), ("otlp-grpc-port", "SCALER_OTLP_GRPC_PORT"), ("host", "SCALER_HOST")],
)
def test_env_name(flag: str, env: str) -> None:
    assert env_name(flag) == env


def test_environment_is_used_when_the_flag_is_absent() -> None:
    env = {
        "SCALER_HOST": "127.0.0.1",
        "SCALER_OTLP_GRPC_PORT": "14317",
        "SCALER_RETENTION": "5m",
        "SCALER_STALE_AFTER": "45s",
        "SCALER_MAX_SERIES": "1000",
        "SCALER_LOG_FORMAT": "text",
        "SCALER_LOG_LEVEL": "debug",
        "SCALER_GRACE": "500ms",
        "UNRELATED": "x",
    }
    settings = parse_settings([], env)
    assert (settings.host, settings.otlp_grpc_port, settings.retention, settings.stale_after) == (
        "127.0.0.1",
        14317,
        300.0,
        45.0,
    )
    assert (settings.max_series, settings.log_format, settings.log_level, settings.grace) == (
        1000,
        "text",
        "debug",
        0.5,
    )


def test_flag_beats_environment() -> None:
    env = {"SCALER_STALE_AFTER": "10s", "SCALER_SCALER_PORT": "7000"}
    settings = parse_settings(["--stale-after", "20s"], env)
    assert settings.stale_after == 20.0
    assert settings.scaler_port == 7000  # the other env value still applies


def test_a_good_flag_hides_a_bad_environment_value() -> None:
    assert parse_settings(["--retention", "60s"], {"SCALER_RETENTION": "garbage"}).retention == 60.0


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--retention", "abc"], "--retention"),
        (["--retention", "120"], "--retention"),  # a duration needs a unit
        (["--retention", "0s"], "--retention"),
        (["--stale-after", "0s"], "--stale-after"),
        (["--otlp-grpc-port", "99999"], "--otlp-grpc-port"),
        (["--otlp-http-port", "-1"], "--otlp-http-port"),
        (["--http-port", "eighty"], "--http-port"),
        (["--max-series", "0"], "--max-series"),
        (["--max-series", "1.5"], "--max-series"),
        (["--log-format", "xml"], "--log-format"),
        (["--log-level", "INFO"], "--log-level"),
        (["--host", "  "], "--host"),
        (["--warmup", "soon"], "--warmup"),
        (["--grace", "5"], "--grace"),
        (["--isolate-namespaces", "maybe"], "--isolate-namespaces"),
        (["--max-request-bytes", "100"], "--max-request-bytes"),
        (["--max-request-bytes", "1kb"], "--max-request-bytes"),  # under 1KiB
        (["--max-request-bytes", "16 parsecs"], "--max-request-bytes"),
        (["--max-push-rate", "-1"], "--max-push-rate"),
        (["--max-push-rate", "inf"], "--max-push-rate"),
        (["--max-push-rate", "nan"], "--max-push-rate"),
        (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"], "--tls-cert"),
    ],
)
def test_bad_flag_values_name_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse_settings(argv, {})
    assert str(info.value).startswith(f"{flag}: ")


@pytest.mark.parametrize(
    ("env", "flag"),
    [
        ({"SCALER_OTLP_GRPC_PORT": "99999"}, "--otlp-grpc-port"),
        ({"SCALER_STALE_AFTER": "30"}, "--stale-after"),
        ({"SCALER_LOG_LEVEL": "loud"}, "--log-level"),
    ],
)
def test_bad_environment_values_name_the_flag_and_the_variable(env: dict[str, str], flag: str) -> None:
    (variable,) = env
    with pytest.raises(SettingsError) as info:
        parse_settings([], env)
    assert str(info.value).startswith(f"{flag} (from {variable}): ")


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_warmup_defaults_to_stale_after() -> None:
    assert parse_settings(["--stale-after", "10s"], {}).warmup == 10.0
    assert parse_settings([], {"SCALER_STALE_AFTER": "12s"}).warmup == 12.0
    assert parse_settings(["--stale-after", "10s", "--warmup", "0s"], {}).warmup == 0.0
    assert parse_settings(["--warmup", "1m"], {}).warmup == 60.0


def test_stale_after_longer_than_retention_is_rejected() -> None:
    with pytest.raises(SettingsError, match=r"--stale-after \(30s\) must not exceed --retention \(20s\)"):
        parse_settings(["--retention", "20s"], {})
    with pytest.raises(SettingsError, match="--stale-after"):
        parse_settings(["--stale-after", "3m"], {})
    assert parse_settings(["--retention", "30s"], {}).stale_after == 30.0  # equal is fine


def test_ports_must_differ_except_zero() -> None:
    with pytest.raises(SettingsError, match="ports must differ"):
        parse_settings(["--scaler-port", "4317"], {})
    settings = parse_settings(
        ["--otlp-grpc-port", "0", "--otlp-http-port", "0", "--scaler-port", "0", "--http-port", "0"], {}
    )
    assert (settings.otlp_grpc_port, settings.otlp_http_port, settings.scaler_port, settings.http_port) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("argv", "env", "value"),
    [
        (["--isolate-namespaces"], {}, True),
        (["--isolate-namespaces", "false"], {}, False),
        ([], {"SCALER_ISOLATE_NAMESPACES": "yes"}, True),
        ([], {"SCALER_ISOLATE_NAMESPACES": "0"}, False),
        ([], {}, False),
    ],
)
def test_boolean_flag(argv: list[str], env: dict[str, str], value: bool) -> None:
    assert parse_settings(argv, env).isolate_namespaces is value


@pytest.mark.parametrize(
    ("text", "size"),
    [("16MiB", 16 * 1024**2), ("512KiB", 512 * 1024), ("2048", 2048), ("2kb", 2000), ("3 MB", 3_000_000)],
)
def test_request_size(text: str, size: int) -> None:
    assert parse_settings(["--max-request-bytes", text], {}).max_request_bytes == size


def test_push_rate_zero_turns_the_limit_off() -> None:
    assert parse_settings(["--max-push-rate", "0"], {}).max_push_rate == 0.0
    assert parse_settings(["--max-push-rate", "250.5"], {}).max_push_rate == 250.5


def test_tls_files(tmp_path: Path) -> None:
    cert, key, ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    for path in (cert, key, ca):
        path.write_text("-----BEGIN-----\n")
    settings = parse_settings(["--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(ca)], {})
    assert (settings.tls_cert, settings.tls_key, settings.tls_client_ca, settings.tls) == (
        str(cert),
        str(key),
        str(ca),
        True,
    )
    with pytest.raises(SettingsError, match="--tls-cert and --tls-key go together"):
        parse_settings(["--tls-cert", str(cert)], {})
    with pytest.raises(SettingsError, match="--tls-client-ca needs --tls-cert"):
        parse_settings(["--tls-client-ca", str(ca)], {})
    with pytest.raises(SettingsError) as info:
        parse_settings([], {"SCALER_TLS_KEY": str(tmp_path / "missing.pem"), "SCALER_TLS_CERT": str(cert)})
    assert str(info.value).startswith("--tls-key (from SCALER_TLS_KEY): cannot read")
