"""/debug/* shows every namespace's data: a bearer token with --ops-token-file, off under isolation without one.

Before, `/debug/*` and `/metrics` answered anyone, and `/debug/query` let anyone run a regex over
every tenant's labels.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from scaler.app import Scaler, start
from scaler.otlp import Kind, Sample
from tests.integration.conftest import FAST
from tests.keda_contract import KedaClient

OPS_ANY = "ops-token-for-everything-0123456789"
OPS_NS = "ops-token-for-namespace-a-0123456789"


async def get(scaler: Scaler, path: str, token: str | None = None) -> tuple[int, dict[str, object] | str]:
    def fetch() -> tuple[int, dict[str, object] | str]:
        request = urllib.request.Request(f"http://127.0.0.1:{scaler.ports['http']}{path}")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
                body = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read().decode(), exc.code
        try:
            return status, json.loads(body)
        except json.JSONDecodeError:
            return status, body

    return await asyncio.to_thread(fetch)


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Scaler]:
    tokens = tmp_path / "ops-tokens"
    tokens.write_text(f"{OPS_ANY}\n{OPS_NS} a  # sees namespace a only\n")
    scaler = await start(replace(FAST, ops_token_file=str(tokens)))
    # a sample of another metric, so that a query that matches nothing reads 0 rather than "nothing received"
    scaler.store.append([Sample("other", (("namespace", "c"), ("pod", "p")), Kind.GAUGE, 1.0)], time.monotonic())
    yield scaler
    await scaler.stop()


DEBUG = ["/debug/scaledobjects", "/debug/series?metric=m", "/debug/query?metricQuery=m"]


async def test_debug_needs_a_token_probes_and_metrics_do_not(guarded: Scaler) -> None:
    for path in DEBUG:
        status, body = await get(guarded, path)
        assert status == 401, path
        assert "--ops-token-file" in str(body)
        assert (await get(guarded, path, "wrong-token-0123456789"))[0] == 401
        assert (await get(guarded, path, OPS_ANY))[0] in (200, 503), path
    for path in ("/metrics", "/healthz", "/readyz"):
        assert (await get(guarded, path))[0] == 200, path


async def test_a_namespace_bound_ops_token_sees_its_namespace_only(guarded: Scaler) -> None:
    channel_address = f"127.0.0.1:{guarded.ports['scaler']}"

    async with grpc.aio.insecure_channel(channel_address) as channel:
        keda = KedaClient(channel)
        for namespace in ("a", "b"):
            await keda.value(keda.ref({"metricQuery": "sum(m)", "targetValue": "1"}, namespace=namespace))
    _, every = await get(guarded, "/debug/scaledobjects", OPS_ANY)
    _, mine = await get(guarded, "/debug/scaledobjects", OPS_NS)
    assert isinstance(every, dict) and isinstance(mine, dict)
    assert {t["namespace"] for t in every["triggers"]} == {"a", "b"}  # type: ignore[attr-defined]
    assert {t["namespace"] for t in mine["triggers"]} == {"a"}  # type: ignore[attr-defined]
    query = urllib.parse.quote('sum(m{namespace="b"})')
    _, confined = await get(guarded, f"/debug/query?metricQuery={query}", OPS_NS)
    assert isinstance(confined, dict)
    assert 'namespace="a"' in str(confined.get("query", "")), confined


async def test_isolation_without_an_ops_token_file_turns_debug_off() -> None:
    scaler = await start(replace(FAST, isolate_namespaces=True))
    try:
        for path in DEBUG:
            status, body = await get(scaler, path)
            assert status == 403, path
            assert "--isolate-namespaces" in str(body)
        assert (await get(scaler, "/metrics"))[0] == 200
    finally:
        await scaler.stop()
