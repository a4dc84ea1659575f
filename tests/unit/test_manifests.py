"""The manifests as users deploy them, rendered by `kubectl kustomize` and checked offline.

Core objects against Kubernetes' schemas (kubernetes-validate ships them), ScaledObjects against KEDA's
CRD, every trigger aimed at the scaler through our own trigger parser, every collector's exporter
against a scaler's Service (the base's, a shard's, or one replica's stable name), and the KServe
InferenceService through the ScaledObject KServe generates from it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import tomllib
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import NamedTuple

import jsonschema
import kubernetes_validate
import pytest
import yaml

from scaler.app import KEDA_SERVICE
from scaler.expression import parse_query
from scaler.settings import Settings, env_name, parse_settings
from scaler.triggers import parse_trigger
from tests.keda_schemas import keda_file
from tests.manifests_support import (
    BASE,
    EXAMPLES,
    ROOT,
    Obj,
    ScalerService,
    all_rendered,
    dockerfile_user,
    kubernetes_schema_errors,
    kustomize_dirs,
    pod_template,
    rel,
    render,
    rendered,
    scaler_service,
    selector_matches,
    the,
)

# KServe's inferenceservice-config defaults (opentelemetryCollector.metricReceiverEndpoint and
# .metricScalerEndpoint): where its sidecars push OTLP and where its ScaledObjects find the scaler.
KSERVE_OTLP_ENDPOINT = "keda-otel-scaler.keda.svc:4317"
KSERVE_SCALER_ENDPOINT = "keda-otel-scaler.keda.svc:4318"
KSERVE_POD_LABEL = "serving.kserve.io/inferenceservice"

OLDEST_KUBERNETES = "1.29"  # native sidecars (restartPolicy: Always init containers) are on by default
CRD_KINDS = {"ScaledObject", "OpenTelemetryCollector", "InferenceService", "PrometheusRule", "ServiceMonitor"}
SCALER_TRIGGER_TYPES = {"external", "external-push"}
SIDECAR_ANNOTATION = "sidecar.opentelemetry.io/inject"
SENDER_LABEL = "keda-llm-scaler/metrics-sender"

DIRS = kustomize_dirs()


def test_every_example_is_a_kustomize_directory() -> None:
    examples = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    assert examples == {"vllm-unified", "kserve", "llm-d-pd", "overflow", "canary", "ha", "sharded"}
    for name in examples:
        assert (EXAMPLES / name / "kustomization.yaml").is_file()


@pytest.mark.parametrize("directory", DIRS, ids=rel)
def test_it_renders(directory: Path) -> None:
    objects = render(directory)
    assert objects
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), obj


# -- Kubernetes' own schemas -----------------------------------------------------------------------------


@pytest.mark.parametrize("directory", DIRS, ids=rel)
def test_core_objects_match_the_kubernetes_schemas(directory: Path) -> None:
    versions = (OLDEST_KUBERNETES, kubernetes_validate.latest_version())
    checked = 0
    for obj in render(directory):
        if obj["kind"] in CRD_KINDS:
            continue
        errors = kubernetes_schema_errors(obj, versions)
        assert not errors, f"{errors}; a custom resource is checked like the others in CRD_KINDS"
        checked += 1
    assert checked or all(o["kind"] in CRD_KINDS for o in render(directory))


def test_the_schema_check_rejects_a_misspelled_field() -> None:
    deployment = copy.deepcopy(the(BASE, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)


# -- KEDA's ScaledObject CRD -----------------------------------------------------------------------------

_CEL_RULES: dict[str, Callable[[Obj], bool]] = {
    # minReplicaCount must be less than or equal to maxReplicaCount
    "!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)": (
        lambda spec: "minReplicaCount" not in spec or spec["minReplicaCount"] <= spec.get("maxReplicaCount", 100)
    ),
}


def _structural(node: Obj, rules: list[tuple[str, str]], path: str) -> Obj:
    """A CRD's openAPIV3Schema as JSON Schema. Unknown fields are errors, as with kubectl --validate=strict."""
    node = dict(node)
    rules.extend((path, r["rule"]) for r in node.pop("x-kubernetes-validations", []))
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    for key in [k for k in node if k.startswith("x-kubernetes-")]:
        node.pop(key)
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    if "properties" in node:
        node["properties"] = {k: _structural(v, rules, f"{path}.{k}") for k, v in node["properties"].items()}
        node.setdefault("additionalProperties", bool(preserve))
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"], rules, f"{path}.*")
    if "items" in node:
        node["items"] = _structural(node["items"], rules, f"{path}[]")
    return node


@cache
def scaledobject_schema() -> tuple[jsonschema.protocols.Validator, tuple[tuple[str, str], ...], str]:
    crd = yaml.safe_load(keda_file("keda.sh_scaledobjects.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    rules: list[tuple[str, str]] = []
    schema = _structural(version["schema"]["openAPIV3Schema"], rules, "")
    api_version = f"{crd['spec']['group']}/{version['name']}"
    return jsonschema.Draft7Validator(schema), tuple(rules), api_version


def keda_crd_errors(scaled_object: Obj) -> list[str]:
    validator, rules, api_version = scaledobject_schema()
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in validator.iter_errors(scaled_object)
    ]
    if scaled_object.get("apiVersion") != api_version:
        errors.append(f"apiVersion {scaled_object.get('apiVersion')!r} is not the CRD's {api_version!r}")
    for path, rule in rules:
        check = _CEL_RULES.get(rule)
        assert check is not None, f"the CRD has a CEL rule this test cannot check yet, at {path}: {rule}"
        assert path == ".spec", f"CEL rule at {path}: only .spec rules are evaluated here"
        if not check(scaled_object.get("spec", {})):
            errors.append(f"spec: violates {rule}")
    # What KEDA's admission webhook adds: fallback works only with AverageValue metrics, never cpu/memory.
    spec = scaled_object.get("spec", {})
    if "fallback" in spec:
        for trigger in spec.get("triggers", []):
            if trigger.get("metricType", "AverageValue") != "AverageValue" or trigger["type"] in {"cpu", "memory"}:
                errors.append(
                    f"fallback is not supported with a {trigger['type']} trigger of {trigger.get('metricType')}"
                )
    return errors


def test_the_crd_check_rejects_what_kubernetes_would() -> None:
    good = copy.deepcopy(the(EXAMPLES / "vllm-unified", "ScaledObject"))
    assert keda_crd_errors(good) == []
    typo = copy.deepcopy(good)
    typo["spec"]["fallBack"] = typo["spec"].pop("fallback")
    assert keda_crd_errors(typo)
    inverted = copy.deepcopy(good)
    inverted["spec"]["minReplicaCount"] = 9
    assert keda_crd_errors(inverted)
    value_metric = copy.deepcopy(good)
    value_metric["spec"]["triggers"][0]["metricType"] = "Value"
    assert keda_crd_errors(value_metric)


# -- every ScaledObject, written by us or generated by KServe ------------------------------------------------


def kserve_scaledobject(isvc: Obj) -> Obj | None:
    """The ScaledObject KServe's KEDA reconciler (v0.16+) writes for an InferenceService (autoscalerClass keda).

    KServe `pkg/controller/v1beta1/inferenceservice/reconcilers/keda/keda_reconciler.go`: the query gets
    namespace and deployment injected, and `targetValue` is the quantity's original string
    (`getOriginalStringMQ`); v0.15 wrote `"%f"` and no injection.
    """
    annotations = isvc["metadata"].get("annotations") or {}
    if annotations.get("serving.kserve.io/autoscalerClass") != "keda":
        return None
    predictor = isvc["spec"]["predictor"]
    name, namespace = f"{isvc['metadata']['name']}-predictor", isvc["metadata"]["namespace"]
    triggers = []
    for metric in (predictor.get("autoScaling") or {}).get("metrics", []):
        if metric["type"] != "PodMetric" or metric["podmetric"]["metric"]["backend"] != "opentelemetry":
            continue
        spec = metric["podmetric"]["metric"]
        metadata = {
            "metricQuery": f'sum({spec["query"]}{{namespace="{namespace}", deployment="{name}"}})',
            "targetValue": str(metric["podmetric"]["target"]["value"]),
            "scalerAddress": spec.get("serverAddress") or KSERVE_SCALER_ENDPOINT,
        }
        if spec.get("operationOverTime"):
            metadata["operationOverTime"] = spec["operationOverTime"]
        triggers.append({"type": "external", "metadata": metadata})
    low = predictor.get("minReplicas", 1)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"name": name},
            "triggers": triggers,
            "minReplicaCount": low,
            "maxReplicaCount": max(predictor.get("maxReplicas", 0), low),
        },
    }


class Scaled(NamedTuple):
    directory: Path
    obj: Obj
    by_kserve: bool

    @property
    def id(self) -> str:
        suffix = " (generated by KServe)" if self.by_kserve else ""
        return f"{rel(self.directory)}:{self.obj['metadata']['name']}{suffix}"


def scaled_objects() -> list[Scaled]:
    found = [Scaled(d, o, False) for d, o in all_rendered("ScaledObject")]
    for directory, isvc in all_rendered("InferenceService"):
        generated = kserve_scaledobject(isvc)
        if generated is not None:
            found.append(Scaled(directory, generated, True))
    return found


SCALED = scaled_objects()


def triggers_of(scaled: Scaled) -> Iterator[tuple[int, Obj]]:
    yield from enumerate(scaled.obj["spec"]["triggers"])


@pytest.mark.parametrize("scaled", SCALED, ids=lambda s: s.id)
def test_scaledobjects_match_the_keda_crd(scaled: Scaled) -> None:
    assert keda_crd_errors(scaled.obj) == []


TRIGGERS = [(s, i, t) for s in SCALED for i, t in triggers_of(s)]


@pytest.mark.parametrize(("scaled", "index", "trigger"), TRIGGERS, ids=[f"{s.id}#{i}" for s, i, _ in TRIGGERS])
def test_triggers_reach_our_scaler_and_parse(scaled: Scaled, index: int, trigger: Obj) -> None:
    assert trigger["type"] in SCALER_TRIGGER_TYPES, f"trigger {index} is not aimed at the scaler"
    address = trigger["metadata"].get("scalerAddress", "")
    assert any(s.resolves(address, "scaler") for s in scaler_services()), (
        f"{address!r} is no scaler Service's scaler port"
    )
    # InvalidTrigger names an unknown or bad key. Isolation confines every selector to the
    # ScaledObject's namespace: our triggers must mean the same with it on.
    namespace = scaled.obj["metadata"]["namespace"]
    parse_trigger(trigger["metadata"], namespace)
    parse_trigger(trigger["metadata"], namespace, isolate=True)


@pytest.mark.parametrize("scaled", SCALED, ids=lambda s: s.id)
def test_triggers_address_the_workload_they_scale(scaled: Scaled) -> None:
    spec = scaled.obj["spec"]
    namespace, target = scaled.obj["metadata"]["namespace"], spec["scaleTargetRef"]["name"]
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    isvc_targets = {f"{i['metadata']['name']}-predictor" for i in rendered(scaled.directory, "InferenceService")}
    deployments = {d["metadata"]["name"] for d in rendered(scaled.directory, "Deployment")}
    assert target in deployments | isvc_targets, f"{target} is not a Deployment of {rel(scaled.directory)}"
    for index, trigger in triggers_of(scaled):
        metadata = trigger["metadata"]
        if "policy" in metadata:
            assert metadata["namespace"] == namespace, f"trigger {index}: namespace"
            assert metadata["deployment"] == target, f"trigger {index}: deployment"
            assert int(metadata.get("minReplicas", spec.get("minReplicaCount", 0))) == spec.get("minReplicaCount", 0)
            assert int(metadata.get("maxReplicas", spec.get("maxReplicaCount", 100))) == spec.get(
                "maxReplicaCount", 100
            )
            # The policy answers a replica count against a target of 1: only AverageValue yields that count.
            assert trigger.get("metricType", "AverageValue") == "AverageValue"
        else:
            matchers = {m.label: m for m in parse_query(metadata["metricQuery"]).selector.matchers}
            for label, wanted in (("namespace", namespace), ("deployment", target)):
                assert label in matchers and (matchers[label].op, matchers[label].value) == ("=", wanted), label


@pytest.mark.parametrize("scaled", [s for s in SCALED if not s.by_kserve], ids=lambda s: s.id)
def test_our_scaledobjects_set_fallback(scaled: Scaled) -> None:
    # Missing data is an error, never a 0: without fallback KEDA has no safe count to hold.
    fallback = scaled.obj["spec"].get("fallback")
    assert fallback and fallback["failureThreshold"] >= 1


_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_./-]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def pod_selector(text: str) -> list[tuple[str, str, str]]:
    matchers, position = [], 0
    while position < len(text):
        match = _MATCHER.match(text, position)
        assert match, f"cannot read podSelector {text!r} at {position}"
        matchers.append((match.group(1), match.group(2), match.group(3)))
        position = match.end()
    return matchers


def _pods_of(directory: Path, deployment: str) -> Obj:
    template = pod_template(the(directory, "Deployment", deployment))
    assert template is not None
    return template


def _collector_for(directory: Path, template: Obj) -> Obj:
    name = template["metadata"].get("annotations", {}).get(SIDECAR_ANNOTATION)
    assert name, "the pod gets no collector sidecar"
    return the(directory, "OpenTelemetryCollector", name)


@pytest.mark.parametrize(
    "scaled", [s for s in SCALED if any("podSelector" in t["metadata"] for _, t in triggers_of(s))], ids=lambda s: s.id
)
def test_pod_selectors_match_the_pods_and_their_collector_sets_the_labels(scaled: Scaled) -> None:
    template = _pods_of(scaled.directory, scaled.obj["spec"]["scaleTargetRef"]["name"])
    labels = template["metadata"]["labels"]
    config = json.dumps(_collector_for(scaled.directory, template)["spec"]["config"])
    for _, trigger in triggers_of(scaled):
        for label, op, value in pod_selector(trigger["metadata"].get("podSelector", "")):
            actual = labels.get(label, "")
            found = re.fullmatch(value, actual) is not None if "~" in op else actual == value
            assert found == (op in {"=", "=~"}), f"{label}{op}{value!r} does not select the pods ({actual!r})"
            assert f'attributes[\\"{label}\\"]' in config or f'"tag_name": "{label}"' in config, (
                f"the collector never puts {label} on the points"
            )


@pytest.mark.parametrize(
    "scaled", [s for s in SCALED if any("overflowOf" in t["metadata"] for _, t in triggers_of(s))], ids=lambda s: s.id
)
def test_an_overflow_pool_follows_its_primary(scaled: Scaled) -> None:
    for _, trigger in triggers_of(scaled):
        metadata = trigger["metadata"]
        primary = [
            s
            for s in SCALED
            if s.directory == scaled.directory and s.obj["spec"]["scaleTargetRef"]["name"] == metadata["overflowOf"]
        ]
        assert len(primary) == 1, f"no ScaledObject scales {metadata['overflowOf']}"
        assert int(metadata["primaryMaxReplicas"]) == primary[0].obj["spec"]["maxReplicaCount"]
        assert scaled.obj["spec"].get("minReplicaCount", 0) == 0, "a burst pool waits at zero"


# -- collectors -----------------------------------------------------------------------------------------------

COLLECTORS = list(all_rendered("OpenTelemetryCollector"))


def _runs_the_scaler(template: Obj) -> bool:
    image = scaler_container()["image"].split(":")[0]
    return any(c["image"].split(":")[0] == image for c in template["spec"]["containers"])


@cache
def scaler_services() -> tuple[ScalerService, ...]:
    """Every ClusterIP Service that selects scaler pods rendered with it: the base's, each shard's."""
    found: dict[tuple[str, str, tuple[tuple[str, int], ...]], ScalerService] = {}
    for directory in kustomize_dirs():
        templates = [t for o in render(directory) if (t := pod_template(o)) is not None and _runs_the_scaler(t)]
        for service in rendered(directory, "Service"):
            spec, meta = service["spec"], service["metadata"]
            if spec.get("clusterIP") == "None" or not any(
                selector_matches({"matchLabels": spec.get("selector", {})}, t["metadata"]["labels"]) for t in templates
            ):
                continue
            ports = {p["targetPort"]: p["port"] for p in spec["ports"]}
            # The same Service may differ by example: the HA example's takes no OTLP.
            found[meta["name"], meta["namespace"], tuple(sorted(ports.items()))] = ScalerService(
                meta["name"], meta["namespace"], ports
            )
    return tuple(found.values())


@cache
def scaler_replicas() -> dict[str, dict[str, int]]:
    """Each StatefulSet replica's stable name (<pod>.<headless Service>.<namespace>.svc) -> its container ports.

    A headless Service's name resolves to pod addresses, so clients reach the container ports themselves.
    """
    found: dict[str, dict[str, int]] = {}
    for directory, statefulset in all_rendered("StatefulSet"):
        template = pod_template(statefulset)
        if template is None or not _runs_the_scaler(template):
            continue
        meta, spec = statefulset["metadata"], statefulset["spec"]
        headless = the(directory, "Service", spec["serviceName"])
        assert headless["spec"].get("clusterIP") == "None", f"{spec['serviceName']} is not headless"
        ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        for ordinal in range(spec.get("replicas", 1)):
            host = f"{meta['name']}-{ordinal}.{spec['serviceName']}.{meta['namespace']}"
            found.update({f"{host}.svc": ports, f"{host}.svc.cluster.local": ports})
    return found


def gateways() -> dict[str, int]:
    """host:port of each gateway collector's OTLP/gRPC receiver, through the Service the operator makes for it.

    The OpenTelemetry operator names it `<name>-collector` (internal/naming/main.go, `Service`).
    """
    found: dict[str, int] = {}
    for _, collector in COLLECTORS:
        if collector["spec"]["mode"] != "deployment":
            continue
        grpc_endpoint = collector["spec"]["config"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        meta = collector["metadata"]
        found[f"{meta['name']}-collector.{meta['namespace']}.svc"] = int(grpc_endpoint.rpartition(":")[2])
    return found


def reaches_a_scaler(address: str, port_name: str) -> bool:
    """Whether an exporter's host:port is a scaler's OTLP port: a Service's, one replica's, or a gateway's."""
    host, _, port = address.rpartition(":")
    if any(s.resolves(address, port_name) for s in scaler_services()):
        return True
    if host in scaler_replicas():
        return port.isdigit() and int(port) == scaler_replicas()[host].get(port_name)
    return port_name == "otlp-grpc" and port.isdigit() and gateways().get(host) == int(port)


def _endpoint(exporter: str, settings: Obj) -> tuple[str, str]:
    """host:port and the container port it must reach, for an OTLP exporter's settings."""
    if exporter in {"otlp", "otlp_grpc"}:
        return re.sub(r"^(dns:///|https?://)", "", settings["endpoint"]), "otlp-grpc"
    if exporter in {"otlphttp", "otlp_http"}:
        url = settings.get("metrics_endpoint") or settings["endpoint"]
        match = re.fullmatch(r"http://([^/]+)(/.*)?", url)
        assert match, f"{url!r}: the scaler serves OTLP/HTTP in plain http"
        return match.group(1), "otlp-http"
    pytest.fail(f"exporter {exporter!r} does not send OTLP to the scaler")


@pytest.mark.parametrize(
    ("directory", "collector"), COLLECTORS, ids=[f"{rel(d)}:{c['metadata']['name']}" for d, c in COLLECTORS]
)
def test_collectors_export_to_our_otlp_port(directory: Path, collector: Obj) -> None:
    assert collector["apiVersion"] == "opentelemetry.io/v1beta1"
    mode = collector["spec"]["mode"]
    assert mode in {"sidecar", "deployment"}, "a sidecar next to vLLM, or a gateway in front of the scalers"
    config = collector["spec"]["config"]
    connectors = config.get("connectors", {})
    pipelines = {n: p for n, p in config["service"]["pipelines"].items() if n.split("/")[0] == "metrics"}
    assert pipelines, "no metrics pipeline"
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                defined = component in config.get(kind, {}) or (kind != "processors" and component in connectors)
                assert defined, f"{component} is used but not defined under {kind}"
        for name in pipeline["exporters"]:
            if name in connectors:
                continue  # its own pipelines are checked here too
            settings = config["exporters"][name]
            address, port = _endpoint(name.split("/")[0], settings)
            assert reaches_a_scaler(address, port), f"{name} sends to {address}, not a scaler's {port} port"
            if port == "otlp-grpc":
                assert settings.get("tls", {}).get("insecure") is True, "the scaler serves OTLP/gRPC without TLS"
        if mode != "sidecar":
            continue  # a gateway forwards the labels its sidecars set
        processors = pipeline.get("processors", [])
        statements = json.dumps([config["processors"][p] for p in processors if p.split("/")[0] == "transform"])
        k8s = any(p.split("/")[0] in {"k8sattributes", "k8s_attributes"} for p in processors)
        for label in ("namespace", "deployment", "pod"):
            assert k8s or f'set(attributes[\\"{label}\\"]' in statements, f"nothing sets {label} on the points"


def test_kserve_default_endpoints_reach_our_service() -> None:
    assert scaler_service().resolves(KSERVE_OTLP_ENDPOINT, "otlp-grpc")
    assert scaler_service().resolves(KSERVE_SCALER_ENDPOINT, "scaler")


class Pod(NamedTuple):
    directory: Path
    namespace: str
    owner: str
    labels: dict[str, str]
    annotations: dict[str, str]


def pods() -> list[Pod]:
    """Pod templates of every example, and the predictor pods KServe makes from InferenceServices."""
    found = []
    for directory in kustomize_dirs():
        for obj in render(directory):
            meta = obj["metadata"]
            template = pod_template(obj)
            if template is not None:
                tmeta = template["metadata"]
                found.append(
                    Pod(
                        directory,
                        meta["namespace"],
                        meta["name"],
                        tmeta.get("labels", {}),
                        tmeta.get("annotations", {}),
                    )
                )
            elif obj["kind"] == "InferenceService":
                labels = {KSERVE_POD_LABEL: meta["name"], **(meta.get("labels") or {})}
                found.append(Pod(directory, meta["namespace"], meta["name"], labels, meta.get("annotations") or {}))
    return found


SENDERS = [p for p in pods() if SIDECAR_ANNOTATION in p.annotations]


@pytest.mark.parametrize("pod", SENDERS, ids=lambda p: f"{rel(p.directory)}:{p.owner}")
def test_metric_senders_get_a_collector_and_pass_the_network_policy(pod: Pod) -> None:
    name = pod.annotations[SIDECAR_ANNOTATION]
    collectors = {c["metadata"]["name"] for c in rendered(pod.directory, "OpenTelemetryCollector")}
    isvc = [i for i in rendered(pod.directory, "InferenceService") if i["metadata"]["name"] == pod.owner]
    generated = {f"{i['metadata']['name']}-predictor" for i in isvc if kserve_scaledobject(i) is not None}
    assert name in collectors | generated, f"no OpenTelemetryCollector {name} for these pods"

    policy = the(BASE, "NetworkPolicy")
    otlp_peers = [
        peer
        for rule in policy["spec"]["ingress"]
        if {p["port"] for p in rule.get("ports", [])} >= {"otlp-grpc"}
        for peer in rule.get("from", [])
    ]
    admitted = [
        peer
        for peer in otlp_peers
        if selector_matches(peer.get("podSelector", {}), pod.labels)
        and selector_matches(peer.get("namespaceSelector", {}), {"kubernetes.io/metadata.name": pod.namespace})
    ]
    assert admitted, f"the scaler's NetworkPolicy refuses OTLP from these pods (labels {pod.labels})"


# -- the scaler itself ------------------------------------------------------------------------------------------


def scaler_container() -> Obj:
    template = pod_template(the(BASE, "Deployment"))
    assert template is not None
    (container,) = template["spec"]["containers"]
    return container


def test_the_service_keeps_kedifys_names_and_ports() -> None:
    service = the(BASE, "Service")
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == ("keda-otel-scaler", "keda")
    ports = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert ports == {4317: "otlp-grpc", 4318: "scaler", 4319: "otlp-http", 8080: "ops"}
    container_ports = {p["name"] for p in scaler_container()["ports"]}
    assert set(ports.values()) <= container_ports
    template = pod_template(the(BASE, "Deployment"))
    assert template is not None
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, template["metadata"]["labels"])


def test_the_container_listens_where_the_service_sends() -> None:
    container = scaler_container()
    env = {e["name"]: e["value"] for e in container["env"]}
    known = {env_name(f.name.replace("_", "-")): f for f in dataclasses.fields(Settings)}
    assert set(env) <= set(known), f"not serve settings: {sorted(set(env) - set(known))}"
    # Every setting with a default is spelled out; the optional files (TLS, tokens) need a Secret.
    missing = sorted(name for name, f in known.items() if f.default is not None and name not in env)
    assert not missing, f"set these serve settings in the Deployment too: {missing}"
    settings = parse_settings([], env)  # raises SettingsError on a bad value
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert by_name == {
        "otlp-grpc": settings.otlp_grpc_port,
        "otlp-http": settings.otlp_http_port,
        "scaler": settings.scaler_port,
        "ops": settings.http_port,
    }
    assert settings.host == "0.0.0.0"


def test_probes_use_grpc_health_on_the_scaler_port() -> None:
    container = scaler_container()
    scaler_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "scaler")
    readiness, liveness = container["readinessProbe"]["grpc"], container["livenessProbe"]["grpc"]
    assert readiness == {"port": scaler_port, "service": KEDA_SERVICE}
    assert liveness["port"] == scaler_port and liveness.get("service", "") in {"", KEDA_SERVICE}


def test_resources_have_requests_and_limits() -> None:
    resources = scaler_container()["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind


def restricted_violations(pod_spec: Obj) -> list[str]:
    """The 'restricted' Pod Security Standard, plus a read-only root filesystem."""
    problems = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(key):
            problems.append(key)
    allowed = {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
    for volume in pod_spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= allowed:
            problems.append(f"volume {volume['name']}: {kinds - allowed}")
    pod_context = pod_spec.get("securityContext", {})
    for container in pod_spec.get("initContainers", []) + pod_spec["containers"]:
        context = container.get("securityContext", {})
        merged = {**pod_context, **context}
        name = container["name"]
        if merged.get("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot")
        if merged.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser 0")
        if merged.get("seccompProfile", {}).get("type") not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{name}: seccompProfile")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []) or set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem")
        if any(p.get("hostPort") for p in container.get("ports", [])):
            problems.append(f"{name}: hostPort")
    return problems


def test_the_scaler_pod_is_restricted_and_runs_as_the_image_user() -> None:
    template = pod_template(the(BASE, "Deployment"))
    assert template is not None
    assert restricted_violations(template["spec"]) == []
    uid, gid = dockerfile_user()
    context = template["spec"]["securityContext"]
    assert context["runAsUser"] == uid
    assert context.get("runAsGroup") == gid


def test_the_restricted_check_catches_a_root_container() -> None:
    template = copy.deepcopy(pod_template(the(BASE, "Deployment")))
    assert template is not None
    template["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = False
    assert restricted_violations(template["spec"]) == ["scaler: runAsNonRoot"]


def test_the_network_policy_admits_only_keda_to_the_scaler_port() -> None:
    policy = the(BASE, "NetworkPolicy")
    template = pod_template(the(BASE, "Deployment"))
    assert template is not None
    assert selector_matches(policy["spec"]["podSelector"], template["metadata"]["labels"])
    assert "Ingress" in policy["spec"]["policyTypes"]
    known_ports = {p["name"] for p in scaler_container()["ports"]}
    keda_namespace = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}
    for rule in policy["spec"]["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        assert ports <= known_ports
        if "scaler" in ports:
            assert ports == {"scaler"} and rule["from"] == [keda_namespace]
        if ports & {"otlp-grpc", "otlp-http"}:
            assert ports == {"otlp-grpc", "otlp-http"}
            for peer in rule["from"]:
                selector = peer["podSelector"]
                assert selector.get("matchLabels") == {SENDER_LABEL: "true"} or selector.get("matchExpressions") == [
                    {"key": KSERVE_POD_LABEL, "operator": "Exists"}
                ], f"OTLP is open to {peer}"


def test_the_disruption_budget_covers_the_scaler() -> None:
    budget = the(BASE, "PodDisruptionBudget")
    template = pod_template(the(BASE, "Deployment"))
    assert template is not None
    assert selector_matches(budget["spec"]["selector"], template["metadata"]["labels"])


def test_the_image_tag_is_the_project_version() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (image,) = kustomization["images"]
    assert image["name"] == scaler_container()["image"].split(":")[0]
    assert image["newTag"] == version


# -- the KServe example --------------------------------------------------------------------------------------

KSERVE = EXAMPLES / "kserve"
KSERVE_OWN = KSERVE / "own-scaledobject"


def test_kserve_generates_a_scaledobject_for_our_scaler() -> None:
    isvc = the(KSERVE, "InferenceService")
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/autoscalerClass"] == "keda"
    assert annotations[SIDECAR_ANNOTATION] == f"{isvc['metadata']['name']}-predictor"
    generated = kserve_scaledobject(isvc)
    assert generated is not None
    (trigger,) = generated["spec"]["triggers"]
    assert trigger["metadata"]["targetValue"] == "4"
    assert not rendered(KSERVE, "ScaledObject"), "KServe writes this ScaledObject; a second one would fight it"


def test_the_own_scaledobject_is_what_kserve_generates_plus_fallback() -> None:
    generated = kserve_scaledobject(the(KSERVE, "InferenceService"))
    assert generated is not None
    own = copy.deepcopy(the(KSERVE_OWN, "ScaledObject"))
    assert own["spec"].pop("fallback")
    assert own == generated


def test_the_own_variant_serves_the_same_model_and_leaves_scaling_to_us() -> None:
    keda_class, external = the(KSERVE, "InferenceService"), the(KSERVE_OWN, "InferenceService")
    assert external["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
    assert "autoScaling" not in external["spec"]["predictor"]
    stripped = copy.deepcopy(keda_class)
    del stripped["spec"]["predictor"]["autoScaling"]
    stripped["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] = "external"
    assert stripped == external
    # The collector KServe would have made: same name, same metric, our OTLP endpoint.
    collector = the(KSERVE_OWN, "OpenTelemetryCollector", f"{keda_class['metadata']['name']}-predictor")
    (metric,) = keda_class["spec"]["predictor"]["autoScaling"]["metrics"]
    kept = collector["spec"]["config"]["processors"]["filter/metrics"]["metrics"]["include"]["metric_names"]
    assert kept == metric["podmetric"]["metric"]["metricNames"]
    assert collector["spec"]["config"]["exporters"]["otlp"]["endpoint"] == KSERVE_OTLP_ENDPOINT


# -- the deploy guide ------------------------------------------------------------------------------------------


def test_the_guides_name_every_directory() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    assert "kubectl apply -k manifests/base" in deploy
    doc = deploy + (ROOT / "docs" / "scaling-out.md").read_text()
    for directory in DIRS:
        where = f"manifests/{rel(directory)}"
        assert where in doc, f"neither docs/deploy.md nor docs/scaling-out.md mentions {where}"
