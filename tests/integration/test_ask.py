"""`keda-llm-scaler ask` against a real scaler: the README quick start's push, answers, errors, TLS, --watch."""

from __future__ import annotations

import asyncio
import io
import json
import shlex
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from scaler.app import Scaler, start
from scaler.keda_client import run
from scaler.otlp import Kind, Sample
from tests.integration.conftest import FAST, Harness, kserve_pod
from tests.support.certs import Authority

# The README quick start, line for line (ports as `serve` picks them by default).
QUICK_START = """\
keda-llm-scaler serve --warmup 0s --log-format text &    # OTLP/HTTP on :4318, KEDA gRPC on :6000, ops on :8080
curl -s localhost:4318/v1/metrics -H 'Content-Type: application/json' -d '{"resourceMetrics": [{"resource":
  {"attributes": [{"key": "k8s.namespace.name", "value": {"stringValue": "ns"}}]}, "scopeMetrics": [{"metrics":
  [{"name": "vllm:num_requests_running", "gauge": {"dataPoints": [{"asDouble": 3}]}}]}]}]}'
keda-llm-scaler ask --scaler localhost:6000 'metricQuery=sum(vllm:num_requests_running{namespace="ns"})' targetValue=4
"""
QUERY = 'sum(vllm:num_requests_running{namespace="ns", deployment="isvc-predictor"})'


def quick_start_payload() -> bytes:
    """The -d argument of the snippet's curl, as the shell passes it."""
    words = shlex.split("\n".join(QUICK_START.splitlines()[1:4]), comments=True)
    return words[words.index("-d") + 1].encode()


def quick_start_ask() -> list[str]:
    words = shlex.split(QUICK_START.splitlines()[4], comments=True)
    assert words[:2] == ["keda-llm-scaler", "ask"]
    return words[2:]


def with_port(argv: list[str], port: int) -> list[str]:
    return [f"127.0.0.1:{port}" if a == "localhost:6000" else a for a in argv]


async def ask(*argv: str) -> tuple[int, str]:
    """`ask` in-process, off the event loop that serves the scaler it asks."""
    out = io.StringIO()
    code = await asyncio.to_thread(run, list(argv), out)
    return code, out.getvalue()


async def post_json(harness: Harness, body: bytes) -> int:
    headers = {"Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(harness.otlp_http + "/v1/metrics", data=body, headers=headers) as reply,
    ):
        return reply.status


async def test_the_quick_start_push_then_ask_prints_the_value(harness: Harness) -> None:
    assert await post_json(harness, quick_start_payload()) == 200
    code, out = await ask(*with_port(quick_start_ask(), harness.scaler.ports["scaler"]))
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"ask 127.0.0.1:{harness.scaler.ports['scaler']} (plaintext)")
    assert any(line.startswith("GetMetricSpec") and "target 4" in line for line in lines), out
    assert any(line.startswith("GetMetrics") and "= 3  (metricValue 3, metricValueFloat 3)" in line for line in lines)
    assert "IsActive       true" in lines
    assert "HPA AverageValue: ceil(3 / 4) = 1 replica" in lines


@pytest.mark.parametrize("settings", [replace(FAST, stale_after=30.0)])  # the child's start-up may take seconds
async def test_the_command_as_users_run_it(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 5), kserve_pod("p2", 2)])
    argv = ["--scaler", f"127.0.0.1:{harness.scaler.ports['scaler']}", "--namespace", "ns"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scaler",
        "ask",
        *argv,
        f"metricQuery={QUERY}",
        "targetValue=4.000000",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "= 7  (metricValue 7, metricValueFloat 7)" in out.decode()
    assert "ceil(7 / 4) = 2 replicas" in out.decode()


async def test_bad_metadata_prints_invalid_argument_and_fails(harness: Harness) -> None:
    address = f"127.0.0.1:{harness.scaler.ports['scaler']}"
    code, out = await ask("--scaler", address, f"metricQeury={QUERY}", "targetValue=4")
    assert code == 1
    lines = out.splitlines()
    spec = next(line for line in lines if line.startswith("GetMetricSpec"))
    assert "error INVALID_ARGUMENT:" in spec and "metricQeury" in spec
    assert any(line.startswith("IsActive") and "error INVALID_ARGUMENT" in line for line in lines)
    assert any("not asked" in line for line in lines), "no GetMetrics without a metric name, as KEDA"


async def test_unreachable_scaler_is_unavailable(harness: Harness) -> None:
    code, out = await ask("--scaler", "127.0.0.1:1", "--timeout", "2s", f"metricQuery={QUERY}", "targetValue=4")
    assert code == 1
    assert "error UNAVAILABLE" in out


async def test_watch_prints_each_stream_message_with_its_time(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 3)])
    address = f"127.0.0.1:{harness.scaler.ports['scaler']}"
    code, out = await ask(
        "--scaler", address, "--namespace", "ns", "--watch", "1s", f"metricQuery={QUERY}", "targetValue=4"
    )
    assert code == 0, out
    lines = out.splitlines()
    assert "StreamIsActive open for 1s" in lines
    messages = [line for line in lines if line.startswith("  ") and line.endswith("true")]
    assert messages, out
    assert messages[0].split()[1].startswith("+0.")  # the activation comes at once
    assert lines[-1] == f"StreamIsActive watched 1s; {len(messages)} messages"


async def test_json_output(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 6)])
    address = f"127.0.0.1:{harness.scaler.ports['scaler']}"
    code, out = await ask(
        "--scaler", address, "--namespace", "ns", "--json", "--watch", "500ms", f"metricQuery={QUERY}", "targetValue=4"
    )
    assert code == 0
    document = json.loads(out)
    assert document["metadata"]["scalerAddress"] == address  # KEDA sends its own keys too
    calls = {c["method"]: c for c in document["calls"]}
    assert calls["GetMetrics"]["response"]["metricValues"][0]["metricValueFloat"] == 6.0
    assert calls["IsActive"]["response"] == {"result": True}
    assert document["stream"]["messages"][0]["result"] is True


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca = Authority()
    paths = dict(
        zip(("server_cert", "server_key"), ca.issue("scaler", server=True).write(tmp_path, "server"), strict=True)
    )
    paths.update(
        zip(("client_cert", "client_key"), ca.issue("keda", server=False).write(tmp_path, "client"), strict=True)
    )
    paths["ca"] = tmp_path / "ca.crt"
    paths["ca"].write_bytes(ca.pem)
    return paths


@pytest.fixture
async def mtls_scaler(pki: dict[str, Path]) -> AsyncIterator[Scaler]:
    settings = replace(
        FAST,
        tls_cert=str(pki["server_cert"]),
        tls_key=str(pki["server_key"]),
        tls_client_ca=str(pki["ca"]),
        stale_after=30.0,
    )
    scaler = await start(settings)
    # One pod's sample straight into the store, so that every call has data to answer from; the OTLP
    # receivers' mTLS is tested in test_security.py.
    labels = (("deployment", "isvc-predictor"), ("namespace", "ns"), ("pod", "p1"))
    scaler.store.append([Sample("vllm:num_requests_running", labels, Kind.GAUGE, 3.0)], time.monotonic())
    yield scaler
    await scaler.stop()


async def test_tls_options_as_keda_takes_them(mtls_scaler: Scaler, pki: dict[str, Path]) -> None:
    address = f"127.0.0.1:{mtls_scaler.ports['scaler']}"
    metadata = [f"metricQuery={QUERY}", "targetValue=4"]
    client = ["--tls-client-cert", str(pki["client_cert"]), "--tls-client-key", str(pki["client_key"])]

    code, out = await ask("--scaler", address, "--ca-cert", str(pki["ca"]), *client, *metadata)
    assert code == 0, out
    assert f"(TLS, CA {pki['ca']}, client certificate {pki['client_cert']})" in out.splitlines()[0]

    code, out = await ask("--scaler", address, "--unsafe-ssl", *client, *metadata)
    assert code == 0, out
    assert "trusting the presented certificate" in out.splitlines()[0]

    for argv in (["--ca-cert", str(pki["ca"])], []):  # no client certificate; plaintext against TLS
        code, out = await ask("--scaler", address, "--timeout", "2s", *argv, *metadata)
        assert code == 1
        assert "error UNAVAILABLE" in out
