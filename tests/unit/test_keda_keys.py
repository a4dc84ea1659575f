"""KEDA passes the whole trigger metadata to the scaler, its own keys included: accept and ignore them.

KEDA's `pkg/scalers/external_scaler.go` reads `scalerAddress`, `enableTLS`, `unsafeSsl` (trigger
metadata) and `caCert`, `tlsClientCert`, `tlsClientKey` (auth params, also written in the metadata,
as kedify's `examples/pipelines-tls/so.yaml` does), resolves keys ending in `FromEnv`, and puts every
key into `ScaledObjectRef.scalerMetadata` (`originalMetadata`). KEDA before #6338 read `tlsCertFile`.
"""

from __future__ import annotations

import pytest

from scaler.errors import InvalidTrigger
from scaler.policy_spec import PolicySpec
from scaler.triggers import QueryTrigger, parse_trigger

# KEDA's documented external-push trigger (keda.sh docs, scalers/external-push), plus a query.
KEDA_EXTERNAL_PUSH_EXAMPLE = {
    "scalerAddress": "external-scaler-service:8080",
    "caCert": "/path/to/tls/ca.pem",
    "tlsCertFile": "/path/to/tls/cert.pem",
    "tlsClientCert": "/path/to/tls/cert.pem",
    "tlsClientKey": "/path/to/tls/key.pem",
    "unsafeSsl": "false",
}
KEDIFY_TLS_EXAMPLE = {
    "scalerAddress": "keda-otel-scaler.keda.svc:4318",
    "enableTLS": "true",
    "unsafeSsl": "true",
    "caCert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    "tlsClientCert": "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n",
    "tlsClientKey": "-----BEGIN PRIVATE KEY-----\nMIID\n-----END PRIVATE KEY-----\n",
    "metricQuery": "sum(nginx_requests{deployment=nginx, namespace=app})",
    "operationOverTime": "rate",
    "targetValue": "2",
}


def test_keda_external_push_example_metadata_is_accepted() -> None:
    spec = parse_trigger({**KEDA_EXTERNAL_PUSH_EXAMPLE, "metricQuery": "q", "targetValue": "1"})
    assert isinstance(spec, QueryTrigger)


def test_kedify_tls_example_is_accepted() -> None:
    spec = parse_trigger(KEDIFY_TLS_EXAMPLE)
    assert isinstance(spec, QueryTrigger)
    assert spec.operation == "rate"


def test_keda_keys_pass_through_policy_triggers_too() -> None:
    spec = parse_trigger({**KEDA_EXTERNAL_PUSH_EXAMPLE, "policy": "vllm", "deployment": "d", "tokenFromEnv": "T"})
    assert isinstance(spec, PolicySpec)


def test_keda_keys_do_not_change_the_metric_name() -> None:
    plain = parse_trigger({"metricQuery": "q", "targetValue": "1"})
    with_tls = parse_trigger({**KEDA_EXTERNAL_PUSH_EXAMPLE, "metricQuery": "q", "targetValue": "1"})
    assert plain.metric_name == with_tls.metric_name


@pytest.mark.parametrize("key", ["cacert", "tlsCert", "caCertificate", "scaleraddress"])
def test_other_unknown_keys_stay_errors(key: str) -> None:
    with pytest.raises(InvalidTrigger, match=f"unknown metadata key '{key}'"):
        parse_trigger({"metricQuery": "q", "targetValue": "1", key: "x"})
