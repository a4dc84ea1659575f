"""The Helm chart, loaded, linted, rendered and packaged by Helm's own Go SDK (helm-python-sdk), offline.

With default values the chart renders manifests/base's objects, plus Helm's standard labels. Each values
file under ci/ renders objects that pass Kubernetes' schemas, the restricted Pod Security Standard and
the scaler's own settings parser. Bad values are refused by values.schema.json, naming the value.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shlex
import tarfile
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from scaler import keda_client
from scaler.app import KEDA_SERVICE, WARM_SERVICE
from scaler.durations import parse_duration
from scaler.settings import _FLAGS, Settings, env_name, parse_settings
from scaler.tokens import parse_tokens
from scaler.triggers import parse_trigger
from tests.manifests_support import (
    BASE,
    EXAMPLES,
    MANIFESTS,
    OBSERVABILITY,
    ROOT,
    Obj,
    ScalerService,
    dockerfile_user,
    kubernetes_schema_errors,
    pod_template,
    render,
    selector_matches,
    the,
)
from tests.unit.test_manifests import (
    KSERVE_OTLP_ENDPOINT,
    KSERVE_SCALER_ENDPOINT,
    OLDEST_KUBERNETES,
    restricted_violations,
)

CHART = MANIFESTS / "helm" / "keda-llm-scaler"
VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
HA_EXAMPLE = EXAMPLES / "ha"
RELEASE, NAMESPACE = "keda-otel-scaler", "keda"
# Labels Helm charts add by convention; everything else must equal manifests/base.
HELM_LABELS = frozenset(
    {"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}
)
# Custom resources, checked for their API group (kubernetes-validate has only core schemas).
CRD_API = {
    "Certificate": "cert-manager.io/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
}
# serve flags that name a file: they come from a Secret, not from settings.
FILE_FLAGS = {
    "tls-cert": "tls.enabled",
    "tls-key": "tls.enabled",
    "tls-client-ca": "tls.clientCA.enabled",
    "otlp-token-file": "otlpTokens.existingSecret",
    "ops-token-file": "opsTokens.existingSecret",
}


# -- rendering -------------------------------------------------------------------------------------------


@cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def values_of(path: Path | None) -> dict[str, Any]:
    return {} if path is None else helm.values_from_yaml(path.read_text())


@cache
def _render(values_json: str) -> dict[str, str]:
    return chart().render(json.loads(values_json), name=RELEASE, namespace=NAMESPACE)


def render_chart(values: dict[str, Any]) -> tuple[Obj, ...]:
    manifests = _render(json.dumps(values, sort_keys=True))
    objects: list[Obj] = []
    for path, text in sorted(manifests.items()):
        if not path.endswith("NOTES.txt"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return tuple(objects)


def notes(values: dict[str, Any]) -> str:
    manifests = _render(json.dumps(values, sort_keys=True))
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def one(objects: tuple[Obj, ...], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def workload(objects: tuple[Obj, ...]) -> Obj:
    (found,) = [o for o in objects if o["kind"] in {"Deployment", "StatefulSet"}]
    return found


def container(objects: tuple[Obj, ...]) -> Obj:
    template = pod_template(workload(objects))
    assert template is not None
    (scaler,) = template["spec"]["containers"]
    found: Obj = scaler
    return found


def env_of(objects: tuple[Obj, ...]) -> dict[str, str]:
    env = container(objects)["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"an environment variable is set twice: {names}"
    return {e["name"]: e["value"] for e in env}


def scaler_settings(objects: tuple[Obj, ...]) -> Settings:
    """What the scaler makes of its environment; the files (from Secrets) are checked by mounted_file."""
    files = {env_name(flag) for flag in FILE_FLAGS}
    env = {k: v for k, v in env_of(objects).items() if k.startswith("SCALER_") and k not in files}
    return parse_settings([], env)  # SettingsError if the scaler would refuse to start


def ids(path: Path | None) -> str:
    return "defaults" if path is None else path.name.removesuffix("-values.yaml")


ALL_VALUES: list[Path | None] = [None, *VALUES_FILES]


# -- comparing with kustomize ---------------------------------------------------------------------------


def without_helm_labels(obj: Obj) -> Obj:
    """The object with Helm's labels taken out of its labels, pod labels and selectors."""
    out = copy.deepcopy(obj)

    def strip(labels: dict[str, str] | None) -> None:
        for key in HELM_LABELS & set(labels or {}):
            assert labels is not None
            del labels[key]

    strip(out["metadata"].get("labels"))
    spec = out.get("spec", {})
    template = pod_template(out)
    if template is not None:
        strip(template["metadata"].get("labels"))
        strip(spec["selector"].get("matchLabels"))
        for term in template["spec"].get("affinity", {}).get("podAntiAffinity", {}).values():
            for rule in term:
                strip(rule.get("podAffinityTerm", rule)["labelSelector"]["matchLabels"])
        for constraint in template["spec"].get("topologySpreadConstraints", []):
            strip(constraint["labelSelector"]["matchLabels"])
    if out["kind"] == "Service":
        strip(spec.get("selector"))
    if out["kind"] == "PodDisruptionBudget":
        strip(spec["selector"]["matchLabels"])
    if out["kind"] in {"NetworkPolicy"}:
        strip(spec["podSelector"]["matchLabels"])
    if out["kind"] == "ServiceMonitor":
        strip(spec["selector"]["matchLabels"])
    if template is not None:
        for item in template["spec"]["containers"]:
            item["env"] = sorted(item.get("env", []), key=lambda e: e["name"])
    return out


def by_name(objects: tuple[Obj, ...] | list[Obj]) -> dict[tuple[str, str], Obj]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_defaults_render_the_base() -> None:
    chart_objects = by_name([without_helm_labels(o) for o in render_chart({})])
    base_objects = by_name([without_helm_labels(o) for o in render(BASE)])
    assert sorted(chart_objects) == sorted(base_objects)
    for key, base in base_objects.items():
        assert chart_objects[key] == base, f"{key[0]}/{key[1]} differs from manifests/base"


def test_helm_adds_only_its_own_labels_and_selects_its_release() -> None:
    for obj in render_chart({}):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    service = one(render_chart({}), "Service")
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "keda-llm-scaler",
        "app.kubernetes.io/instance": RELEASE,
    }


@pytest.mark.parametrize("ha", [False, True], ids=["one", "ha"])
def test_the_observability_objects_are_those_of_manifests_observability(ha: bool) -> None:
    values = {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True},
        "ha": {"enabled": ha},
    }
    chart_objects = by_name(render_chart(values))
    kustomized = render(OBSERVABILITY)
    assert {(o["kind"], o["metadata"]["name"]) for o in kustomized} <= set(chart_objects)
    for theirs in kustomized:
        ours = chart_objects[(theirs["kind"], theirs["metadata"]["name"])]
        assert ours["metadata"]["namespace"] == theirs["metadata"]["namespace"]
        assert theirs["metadata"]["labels"].items() <= ours["metadata"]["labels"].items()
        if theirs["kind"] == "ConfigMap":
            assert ours["data"].keys() == theirs["data"].keys()
            for key, text in theirs["data"].items():
                assert json.loads(ours["data"][key]) == json.loads(text)
        else:
            assert without_helm_labels(ours)["spec"] == theirs["spec"]


# -- lint, schemas, the restricted standard ---------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_VALUES, ids=ids)
def test_helm_lint_finds_nothing(path: Path | None) -> None:
    for kube_version in (f"v{OLDEST_KUBERNETES}.0", None):
        report = helm.lint(CHART, values_of(path), strict=True, namespace=NAMESPACE, kube_version=kube_version)
        findings = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
        assert not findings and not report["errors"], (findings, report["errors"])


@pytest.mark.parametrize("path", ALL_VALUES, ids=ids)
def test_every_object_matches_its_schema(path: Path | None) -> None:
    versions = (OLDEST_KUBERNETES, kubernetes_validate.latest_version())
    for obj in render_chart(values_of(path)):
        assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
        if obj["kind"] in CRD_API:
            assert obj["apiVersion"] == CRD_API[obj["kind"]]
            continue
        assert kubernetes_schema_errors(obj, versions) == []


@pytest.mark.parametrize("path", ALL_VALUES, ids=ids)
def test_the_pod_is_restricted_and_runs_as_the_image_user(path: Path | None) -> None:
    template = pod_template(workload(render_chart(values_of(path))))
    assert template is not None
    assert restricted_violations(template["spec"]) == []
    uid, gid = dockerfile_user()
    assert template["spec"]["securityContext"]["runAsUser"] == uid
    assert template["spec"]["securityContext"].get("runAsGroup") == gid
    assert template["spec"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("path", ALL_VALUES, ids=ids)
def test_resources_have_requests_and_limits(path: Path | None) -> None:
    resources = container(render_chart(values_of(path)))["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind


# -- what the scaler is given ----------------------------------------------------------------------------


def mounted_file(objects: tuple[Obj, ...], path: str) -> tuple[str, str]:
    """The (Secret name, key) a file path in the container comes from."""
    template = pod_template(workload(objects))
    assert template is not None
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    for mount in container(objects)["volumeMounts"]:
        directory = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(directory) and "subPath" not in mount:
            secret = volumes[mount["name"]]["secret"]
            name = path.removeprefix(directory)
            items = {i["path"]: i["key"] for i in secret.get("items", [])}
            assert not items or name in items, f"{path}: {name} is not projected from Secret {secret['secretName']}"
            return secret["secretName"], items.get(name, name)
    pytest.fail(f"{path} is on no mounted Secret")


@pytest.mark.parametrize("path", ALL_VALUES, ids=ids)
def test_the_scaler_accepts_what_it_is_given(path: Path | None) -> None:
    objects = render_chart(values_of(path))
    env = {k: v for k, v in env_of(objects).items() if k.startswith("SCALER_")}
    assert set(env) <= {env_name(flag) for flag in _FLAGS}, "a SCALER_ variable the scaler does not read"
    for flag in FILE_FLAGS:
        if env_name(flag) in env:
            assert mounted_file(objects, env[env_name(flag)])
    settings = scaler_settings(objects)
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert ports == {
        "otlp-grpc": settings.otlp_grpc_port,
        "otlp-http": settings.otlp_http_port,
        "scaler": settings.scaler_port,
        "ops": settings.http_port,
    }


@pytest.mark.parametrize("path", ALL_VALUES, ids=ids)
def test_probes_ask_grpc_health_or_with_tls_the_ops_port(path: Path | None) -> None:
    objects = render_chart(values_of(path))
    scaler = container(objects)
    ports = {p["name"]: p["containerPort"] for p in scaler["ports"]}
    readiness, liveness = scaler["readinessProbe"], scaler["livenessProbe"]
    if "SCALER_TLS_CERT" in env_of(objects):  # with HA, ?warm=1 waits for the warm-up as the Warm name does
        warm = workload(objects)["kind"] == "StatefulSet"
        assert readiness["httpGet"] == {"path": "/readyz?warm=1" if warm else "/readyz", "port": "ops"}
        assert liveness["httpGet"] == {"path": "/healthz", "port": "ops"}
    else:
        # With HA a replica is ready once warm, its pushes arriving through the headless Service. One replica
        # must be ready while it warms up: its pushes come through the Service its readiness gates.
        warm = workload(objects)["kind"] == "StatefulSet"
        assert readiness["grpc"] == {"port": ports["scaler"], "service": WARM_SERVICE if warm else KEDA_SERVICE}
        assert liveness["grpc"] == {"port": ports["scaler"]}


@pytest.mark.parametrize("path", ALL_VALUES, ids=ids)
def test_services_reach_the_pods_named_ports(path: Path | None) -> None:
    objects = render_chart(values_of(path))
    template = pod_template(workload(objects))
    assert template is not None
    names = {p["name"] for p in container(objects)["ports"]}
    for service in (o for o in objects if o["kind"] == "Service"):
        assert selector_matches({"matchLabels": service["spec"]["selector"]}, template["metadata"]["labels"])
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
    for kind, key in (("PodDisruptionBudget", "selector"), ("NetworkPolicy", "podSelector")):
        for obj in (o for o in objects if o["kind"] == kind):
            assert selector_matches(obj["spec"][key], template["metadata"]["labels"]), kind


def service_of(objects: tuple[Obj, ...], name: str = RELEASE) -> ScalerService:
    service = one(objects, "Service", name)
    ports = {p["targetPort"]: p["port"] for p in service["spec"]["ports"]}
    return ScalerService(service["metadata"]["name"], service["metadata"]["namespace"], ports)


def test_kserve_default_endpoints_reach_the_chart_service() -> None:
    service = service_of(render_chart({}))
    assert service.resolves(KSERVE_OTLP_ENDPOINT, "otlp-grpc")
    assert service.resolves(KSERVE_SCALER_ENDPOINT, "scaler")


def test_tls_from_a_secret_with_client_certificates() -> None:
    objects = render_chart(values_of(CHART / "ci" / "tls-values.yaml"))
    env = env_of(objects)
    assert mounted_file(objects, env["SCALER_TLS_CERT"]) == ("scaler-tls", "tls.crt")
    assert mounted_file(objects, env["SCALER_TLS_KEY"]) == ("scaler-tls", "tls.key")
    assert mounted_file(objects, env["SCALER_TLS_CLIENT_CA"]) == ("scaler-client-ca", "ca.crt")
    assert not [o for o in objects if o["kind"] == "Certificate"]
    assert "--unsafe-ssl --tls-client-cert" in notes(values_of(CHART / "ci" / "tls-values.yaml"))


def test_cert_manager_certifies_every_name_the_scaler_is_reached_by() -> None:
    objects = render_chart(values_of(CHART / "ci" / "cert-manager-values.yaml"))
    certificate = one(objects, "Certificate")["spec"]
    env = env_of(objects)
    assert mounted_file(objects, env["SCALER_TLS_CERT"]) == (certificate["secretName"], "tls.crt")
    assert "SCALER_TLS_CLIENT_CA" not in env
    assert certificate["issuerRef"] == {"name": "cluster-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    names = certificate["dnsNames"]
    assert service_of(objects).hosts() <= set(names)
    assert "*.keda-otel-scaler-headless.keda.svc" in names and "scaler.example.com" in names
    assert 0 < parse_duration(certificate["renewBefore"]) < parse_duration(certificate["duration"])


def test_tokens_from_a_secret_or_from_lines() -> None:
    values = values_of(CHART / "ci" / "tokens-values.yaml")
    objects = render_chart(values)
    env = env_of(objects)
    assert mounted_file(objects, env["SCALER_OTLP_TOKEN_FILE"]) == ("scaler-push-tokens", "tokens.txt")
    secret_name, key = mounted_file(objects, env["SCALER_OPS_TOKEN_FILE"])
    secret = one(objects, "Secret", secret_name)
    assert parse_tokens(secret["stringData"][key]) == {
        "0123456789abcdef0123456789abcdef": None,
        "fedcba9876543210fedcba9876543210": "team-a",
    }
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"] == [secret_name]


def test_isolation_confines_namespaces_and_narrows_the_network_policy() -> None:
    objects = render_chart(values_of(CHART / "ci" / "isolation-values.yaml"))
    assert scaler_settings(objects).isolate_namespaces is True
    policy = one(objects, "NetworkPolicy")["spec"]["ingress"]
    rules = {frozenset(p["port"] for p in rule["ports"]): rule["from"] for rule in policy}
    assert rules[frozenset({"scaler"})] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda-system"}}}
    ]
    gateway = {"app.kubernetes.io/name": "otel-gateway", "app.kubernetes.io/component": "collector"}
    assert rules[frozenset({"otlp-grpc", "otlp-http"})] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"example.com/otlp-sender": "yes"}}},
        {"namespaceSelector": {}, "podSelector": {"matchLabels": gateway}},
    ]
    assert rules[frozenset({"ops"})] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    secret = one(objects, "Secret", "keda-otel-scaler-otlp-tokens")
    assert set(parse_tokens(secret["stringData"]["tokens"]).values()) == {"team-a", "team-b"}


def test_a_null_setting_leaves_the_scaler_default_and_names_follow_the_override() -> None:
    objects = render_chart(values_of(CHART / "ci" / "scheduling-values.yaml"))
    env = env_of(objects)
    assert "SCALER_WARMUP" not in env and "SCALER_MAX_SERIES" not in env
    assert env["SCALER_MAX_PUSH_RATE"] == "2500.5" and env["PYTHONFAULTHANDLER"] == "1"
    settings = scaler_settings(objects)
    assert settings.warmup == settings.stale_after and settings.max_series == 200_000
    assert {o["metadata"]["name"] for o in objects} == {"llm-scaler"}
    assert container(objects)["image"] == "registry.example.com/keda-llm-scaler:0.1.0-rc1"
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


# -- HA: as manifests/examples/ha ---------------------------------------------------------------------------


def ha_example() -> tuple[Obj, ...]:
    if not (HA_EXAMPLE / "kustomization.yaml").is_file():
        pytest.skip("manifests/examples/ha is not there to compare with")
    return render(HA_EXAMPLE)


def test_ha_renders_the_statefulset_of_the_ha_example() -> None:
    objects = render_chart({"ha": {"enabled": True}})
    example = by_name(list(ha_example()))
    ours = without_helm_labels(one(objects, "StatefulSet"))
    assert ours == without_helm_labels(example[("StatefulSet", RELEASE)])
    headless = without_helm_labels(one(objects, "Service", f"{RELEASE}-headless"))
    # Labels too: the example's carries keda-llm-scaler/headless, which the ServiceMonitors leave out.
    assert headless == without_helm_labels(example[("Service", f"{RELEASE}-headless")])
    assert headless["spec"]["publishNotReadyAddresses"] is True, "pushes must reach a replica before it is ready"


def test_ha_collectors_reach_each_replica_and_never_the_shared_service() -> None:
    objects = render_chart(values_of(CHART / "ci" / "ha-values.yaml"))
    statefulset = one(objects, "StatefulSet")
    headless = service_of(objects, f"{RELEASE}-headless")
    pods = [f"{RELEASE}-{i}" for i in range(statefulset["spec"]["replicas"])]
    endpoints = re.findall(r"endpoint: (\S+)", notes(values_of(CHART / "ci" / "ha-values.yaml")))
    assert endpoints == [f"{pod}.{headless.name}.{NAMESPACE}.svc:4317" for pod in pods]
    for endpoint in endpoints:
        host, _, port = endpoint.rpartition(":")
        assert host.split(".", 1)[1] in headless.hosts() and int(port) == headless.port_for["otlp-grpc"]
    # Through one Service each sidecar would feed one replica: partial sums. There is no OTLP port to aim at.
    shared = service_of(objects)
    assert set(shared.port_for) == {"scaler", "ops"}
    assert shared.resolves(KSERVE_SCALER_ENDPOINT, "scaler")
    monitor = one(render_chart({"ha": {"enabled": True}, "serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    selected = [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Service" and selector_matches(monitor["spec"]["selector"], o["metadata"]["labels"])
    ]
    assert selected == [RELEASE], "each replica must be scraped once"


def test_ha_collectors_of_the_example_reach_the_chart_pods() -> None:
    objects = render_chart({"ha": {"enabled": True}})
    headless = service_of(objects, f"{RELEASE}-headless")
    collectors = [o for o in ha_example() if o["kind"] == "OpenTelemetryCollector"]
    exporters = [e for c in collectors for n, e in c["spec"]["config"]["exporters"].items() if n.startswith("otlp")]
    pods = set()
    for exporter in exporters:
        host, _, port = exporter["endpoint"].rpartition(":")
        pod, _, service_host = host.partition(".")
        assert service_host in headless.hosts() and int(port) == headless.port_for["otlp-grpc"], host
        pods.add(pod)
    assert pods == {f"{RELEASE}-{i}" for i in range(one(objects, "StatefulSet")["spec"]["replicas"])}


# -- NOTES.txt -------------------------------------------------------------------------------------------------


def ask_commands(text: str) -> Iterator[list[str]]:
    for line in text.replace("\\\n", " ").splitlines():
        if "keda-llm-scaler ask" in line:
            yield shlex.split(line.split("keda-llm-scaler ask", 1)[1])


@pytest.mark.parametrize("path", ALL_VALUES, ids=ids)
def test_notes_give_the_scaler_address_and_an_ask_line_that_parses(path: Path | None) -> None:
    values = values_of(path)
    objects = render_chart(values)
    text = notes(values)
    service = service_of(objects, workload(objects)["metadata"]["name"])
    (address,) = re.findall(r"scalerAddress: (\S+)", text)
    assert service.resolves(address, "scaler")
    if "otlp-grpc" in service.port_for:
        (endpoint,) = re.findall(r"endpoint: (\S+)", text)
        assert service.resolves(endpoint, "otlp-grpc")
    (argv,) = list(ask_commands(text))
    parser = argparse.ArgumentParser()
    keda_client.add_arguments(parser)
    args = parser.parse_args([a.replace("NAMESPACE", "llm") for a in argv])
    assert args.scaler == f"localhost:{service.port_for['scaler']}"
    parse_trigger(dict(args.metadata), args.namespace)


# -- bad values -------------------------------------------------------------------------------------------------

BAD_VALUES = [
    ({"settings": {"scalerPort": "abc"}}, "at '/settings/scalerPort': got string, want integer"),
    ({"service": {"kedaExternalScalerPort": "4318"}}, "at '/service/kedaExternalScalerPort': got string, want integer"),
    ({"settings": {"otlpGrpcPort": 70000}}, "at '/settings/otlpGrpcPort'"),
    ({"settings": {"logFormat": "xml"}}, "at '/settings/logFormat': value must be one of 'json', 'text'"),
    ({"settings": {"retention": "30"}}, "at '/settings/retention'"),
    ({"settings": {"staleAfter": "0s"}}, "at '/settings/staleAfter'"),
    ({"settings": {"maxRequestBytes": "16GB"}}, "at '/settings/maxRequestBytes'"),
    ({"settings": {"maxSeries": 0}}, "at '/settings/maxSeries'"),
    ({"settings": {"staleAfterSeconds": "30s"}}, "additional properties 'staleAfterSeconds' not allowed"),
    ({"replicaCount": 2}, "additional properties 'replicaCount' not allowed"),
    ({"ha": {"enabled": True, "replicas": 1}}, "at '/ha/replicas'"),
    ({"otlpTokens": {"lines": ["short"]}}, "at '/otlpTokens/lines/0'"),
    ({"networkPolicy": {"senderPodLabels": [{}]}}, "at '/networkPolicy/senderPodLabels/0'"),
    ({"networkPolicy": {"senderPodLabels": [], "kservePredictors": False}}, "no pod could push OTLP"),
    ({"settings": {"scalerPort": 4317}}, "settings.otlpGrpcPort and settings.scalerPort are both 4317"),
    ({"tls": {"enabled": True, "certManager": {"enabled": True}}}, "tls.certManager.issuerRef.name"),
    ({"tls": {"clientCA": {"enabled": True}}}, "tls.clientCA.enabled needs tls.enabled"),
    ({"extraEnv": [{"name": "SCALER_WARMUP", "value": "0s"}]}, "extraEnv: SCALER_WARMUP is a serve flag"),
    (
        {"opsTokens": {"existingSecret": "a", "lines": ["0123456789abcdef0123"]}},
        "opsTokens: give existingSecret or lines",
    ),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_bad_values_are_refused_naming_them(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError) as refused:
        chart().render(values, name=RELEASE, namespace=NAMESPACE)
    assert message in str(refused.value)


def schema_accepts(values: dict[str, Any]) -> bool:
    try:
        chart().validate_schema(values)
    except helm.HelmValuesError:
        return False
    return True


def scaler_accepts(flag: str, value: str) -> bool:
    """The flag's own parser (scaler/settings.py), without the checks across flags."""
    try:
        _FLAGS[flag][0](value)
    except ValueError:
        return False
    return True


# The forms users write; the schema may be stricter than the scaler about spaces around a value.
SAMPLES = {
    "retention": ["120s", "500ms", "1h30m", "1.5s", "0.5s", "0s", "00s", "30", "-1s", "1d", "s", ""],
    "warmup": ["0s", "30s", "2m", "30", "-5s", "5 s"],
    "max-request-bytes": ["16MiB", "512KiB", "1GiB", "16mib", "2kB", "1kB", "1MB", "1024", "1023", "100b", "16GB", "x"],
}


@pytest.mark.parametrize(("flag", "value"), [(f, v) for f, vs in SAMPLES.items() for v in vs])
def test_the_schema_and_the_scaler_agree_on_a_value(flag: str, value: str) -> None:
    key = re.sub(r"-(\w)", lambda m: m.group(1).upper(), flag)
    assert schema_accepts({"settings": {key: value}}) == scaler_accepts(flag, value)


# -- values.yaml covers every flag; the values table covers values.yaml ---------------------------------------


def camel(flag: str) -> str:
    head, *rest = flag.split("-")
    return head + "".join(word.capitalize() for word in rest)


def lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"values.yaml has no {dotted}"
        node = node[part]
    return node


def test_every_serve_flag_has_a_value() -> None:
    values = chart().values
    schema = chart().schema
    assert schema is not None
    settings = schema["properties"]["settings"]["properties"]
    for flag in _FLAGS:
        if flag in FILE_FLAGS:
            lookup(values, FILE_FLAGS[flag])
        else:
            assert camel(flag) in values["settings"], f"--{flag}: add settings.{camel(flag)} to values.yaml"
            assert camel(flag) in settings, f"--{flag}: add settings.{camel(flag)} to values.schema.json"
    assert set(values["settings"]) == {camel(f) for f in _FLAGS if f not in FILE_FLAGS}


def paths(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every key of values.yaml, dotted, with its default: maps, then what they hold."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        yield path, value
        if isinstance(value, dict):
            yield from paths(value, f"{path}.")


def shown(value: Any) -> str:
    """A default as the values table writes it."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, str) and not value:
        return '""'
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def values_table() -> dict[str, list[str]]:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    section = doc.split("### Helm values", 1)[1].split("\n#", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        match = re.match(r"\| `([\w.]+)` \|", line)
        if match:
            rows[match.group(1)] = [c.strip() for c in line.strip().strip("|").split("|")]
    return rows


def test_the_values_table_matches_values_yaml() -> None:
    raw = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = values_table()
    every = dict(paths(raw))
    assert set(rows) <= set(every), f"the table names keys values.yaml lacks: {sorted(set(rows) - set(every))}"
    for path, value in every.items():
        if isinstance(value, dict) and value and path not in rows:
            continue  # a map whose keys have rows of their own
        covering = [r for r in rows if path == r or path.startswith(r + ".")]
        assert covering, f"docs/deploy.md's values table has no row for {path}"
        if path in rows:
            assert rows[path][1] == f"`{shown(value)}`", (
                f"{path}: the table says {rows[path][1]}, values.yaml {value!r}"
            )


# -- versions and packaging ----------------------------------------------------------------------------------------


def test_the_chart_and_image_versions_are_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart().version == version and chart().metadata["appVersion"] == version
    assert (
        container(render_chart({}))["image"]
        == the(BASE, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    )


def test_the_packaged_chart_renders_the_same_and_carries_the_observability_files(tmp_path: Path) -> None:
    archive = Path(helm.package(CHART, destination=tmp_path))
    assert archive.name == f"keda-llm-scaler-{chart().version}.tgz"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        dashboard = tar.extractfile("keda-llm-scaler/files/keda-llm-scaler-dashboard.json")
        assert dashboard is not None
        assert dashboard.read() == (OBSERVABILITY / "keda-llm-scaler-dashboard.json").read_bytes()
    assert not [n for n in names if "/ci/" in n], "the per-feature test values are not shipped"
    values = {"ha": {"enabled": True}, "prometheusRule": {"enabled": True}, "dashboard": {"enabled": True}}
    with helm.Chart.load_archive(archive.read_bytes()) as packaged:
        assert packaged.render(values, name=RELEASE, namespace=NAMESPACE) == _render(json.dumps(values, sort_keys=True))
