"""The two scale-out examples, beyond what every example is held to in test_manifests.py.

examples/ha: two replicas of the scaler (StatefulSet keda-otel-scaler, headless Service
keda-otel-scaler-headless), every collector exporting to both, KEDA asking the ClusterIP Service.
examples/sharded: a gateway whose routing connector sends each namespace to one scaler, and each
ScaledObject asking the scaler its namespace's series go to.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest

from scaler.app import KEDA_SERVICE, WARM_SERVICE
from scaler.settings import parse_settings
from tests.manifests_support import (
    EXAMPLES,
    OBSERVABILITY,
    ROOT,
    Obj,
    ScalerService,
    pod_template,
    render,
    rendered,
    selector_matches,
    the,
)
from tests.unit.test_manifests import (
    _endpoint,
    restricted_violations,
    scaler_replicas,
    scaler_services,
)

HA = EXAMPLES / "ha"
SHARDED = EXAMPLES / "sharded"
BASE_DIR = ROOT / "manifests" / "base"
STATEFULSET, HEADLESS, CLUSTER_IP = "keda-otel-scaler", "keda-otel-scaler-headless", "keda-otel-scaler"
SCALER_IMAGE = "keda-llm-scaler"


def _template(obj: Obj) -> Obj:
    template = pod_template(obj)
    assert template is not None
    return template


def _scaler_workloads(directory: Path) -> list[Obj]:
    return [
        o
        for o in render(directory)
        if (t := pod_template(o)) is not None
        and any(c["image"].split(":")[0] == SCALER_IMAGE for c in t["spec"]["containers"])
    ]


def _metrics_exporters(collector: Obj) -> list[tuple[str, Obj]]:
    config = collector["spec"]["config"]
    names = [
        name
        for pipeline_name, pipeline in config["service"]["pipelines"].items()
        if pipeline_name.split("/")[0] == "metrics"
        for name in pipeline["exporters"]
        if name not in config.get("connectors", {})
    ]
    return [(name, config["exporters"][name]) for name in names]


# -- examples/ha -------------------------------------------------------------------------------------------


def statefulset() -> Obj:
    return the(HA, "StatefulSet", STATEFULSET)


def test_the_scaler_runs_as_a_statefulset_of_two_under_the_headless_service() -> None:
    (workload,) = _scaler_workloads(HA)
    assert workload["kind"] == "StatefulSet", "the base's single-replica Deployment must be gone"
    sts = statefulset()
    assert (sts["metadata"]["namespace"], sts["spec"]["replicas"]) == ("keda", 2)
    assert sts["spec"]["serviceName"] == HEADLESS
    headless = the(HA, "Service", HEADLESS)
    assert headless["metadata"]["namespace"] == "keda"
    assert headless["spec"]["clusterIP"] == "None"
    # Pushes must reach a replica while it warms up, before (or whether or not) it is ready.
    assert headless["spec"]["publishNotReadyAddresses"] is True
    labels = _template(sts)["metadata"]["labels"]
    assert selector_matches(sts["spec"]["selector"], labels)
    assert selector_matches({"matchLabels": headless["spec"]["selector"]}, labels)


def test_the_replicas_run_the_base_pod_unchanged_but_for_placement_and_readiness() -> None:
    ours = copy.deepcopy(_template(statefulset()))
    for key in ("affinity", "topologySpreadConstraints"):
        ours["spec"].pop(key)
    (container,) = ours["spec"]["containers"]
    container["readinessProbe"]["grpc"]["service"] = KEDA_SERVICE  # the probe waits for the warm-up here only
    assert ours == _template(the(BASE_DIR, "Deployment")), "keep the StatefulSet's pod in step with the base"
    assert restricted_violations(_template(statefulset())["spec"]) == []


def test_a_restarted_replica_joins_kedas_service_only_once_warm_while_pushes_reach_it_before() -> None:
    template = _template(statefulset())
    (container,) = template["spec"]["containers"]
    scaler_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "scaler")
    # SERVING once --warmup has passed (scaler/app.py): until then the ClusterIP Service sends KEDA elsewhere.
    assert container["readinessProbe"]["grpc"] == {"port": scaler_port, "service": WARM_SERVICE}
    (base,) = _template(the(BASE_DIR, "Deployment"))["spec"]["containers"]
    assert container["livenessProbe"] == base["livenessProbe"]
    # One replica must be ready while it warms up: its pushes come through the Service its readiness gates.
    assert base["readinessProbe"]["grpc"]["service"] == KEDA_SERVICE
    # The pushes that warm it come through the headless Service, which must list it before it is ready.
    headless = the(HA, "Service", HEADLESS)
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert selector_matches({"matchLabels": headless["spec"]["selector"]}, template["metadata"]["labels"])
    assert "otlp-grpc" in {p["targetPort"] for p in headless["spec"]["ports"]}


def test_the_image_is_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (container,) = _template(statefulset())["spec"]["containers"]
    assert container["image"] == f"{SCALER_IMAGE}:{version}"


def test_a_rollout_waits_for_each_replica_to_warm_up() -> None:
    spec = statefulset()["spec"]
    (container,) = _template(statefulset())["spec"]["containers"]
    settings = parse_settings([], {e["name"]: e["value"] for e in container["env"]})
    # Until then a restarted replica answers "warming up"; restarting the other meanwhile leaves none.
    assert spec["minReadySeconds"] >= settings.warmup
    assert spec.get("updateStrategy", {}).get("type", "RollingUpdate") == "RollingUpdate"
    assert spec["podManagementPolicy"] == "Parallel"


def test_the_replicas_land_on_different_nodes() -> None:
    template = _template(statefulset())
    terms = template["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert any(
        t["topologyKey"] == "kubernetes.io/hostname"
        and selector_matches(t["labelSelector"], template["metadata"]["labels"])
        for t in terms
    )


def test_the_disruption_budget_lets_exactly_one_replica_go() -> None:
    labels = _template(statefulset())["metadata"]["labels"]
    (budget,) = [b for b in rendered(HA, "PodDisruptionBudget") if selector_matches(b["spec"]["selector"], labels)]
    replicas = statefulset()["spec"]["replicas"]
    spec = budget["spec"]
    allowed = spec["maxUnavailable"] if "maxUnavailable" in spec else replicas - spec["minAvailable"]
    assert allowed == 1


def test_keda_asks_the_clusterip_service_which_takes_no_otlp() -> None:
    service = the(HA, "Service", CLUSTER_IP)
    assert service["spec"].get("clusterIP") != "None"
    ports = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
    # kedify's scaler port stays; OTLP through one Service would feed one replica per sender (partial sums).
    assert ports == {4318: "scaler", 8080: "ops"}
    assert selector_matches(
        {"matchLabels": service["spec"]["selector"]}, _template(statefulset())["metadata"]["labels"]
    )
    ours = ScalerService(CLUSTER_IP, "keda", {p["targetPort"]: p["port"] for p in service["spec"]["ports"]})
    scaled = rendered(HA, "ScaledObject")
    assert scaled
    for obj in scaled:
        for trigger in obj["spec"]["triggers"]:
            # Not a replica's own name: after a failover KEDA must reach whichever replica is up.
            assert ours.resolves(trigger["metadata"]["scalerAddress"], "scaler"), trigger["metadata"]["scalerAddress"]


def test_every_collector_exports_to_every_replica_and_not_through_the_service() -> None:
    sts = statefulset()
    wanted = {
        f"{sts['metadata']['name']}-{n}.{HEADLESS}.keda.svc:{scaler_replicas()[f'{STATEFULSET}-{n}.{HEADLESS}.keda.svc']['otlp-grpc']}"
        for n in range(sts["spec"]["replicas"])
    }
    collectors = rendered(HA, "OpenTelemetryCollector")
    assert collectors
    for collector in collectors:
        sent = {_endpoint(name.split("/")[0], settings)[0] for name, settings in _metrics_exporters(collector)}
        # Through the Service, each sidecar's connection would reach one replica: both would hold partial sums.
        assert sent == wanted, f"{collector['metadata']['name']} exports to {sorted(sent)}"


@pytest.mark.parametrize("directory", [BASE_DIR, HA, SHARDED], ids=lambda d: d.name)
def test_prometheus_scrapes_each_scaler_pod_once(directory: Path) -> None:
    monitor = the(OBSERVABILITY, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    services = [
        s
        for s in rendered(directory, "Service")
        if s["metadata"]["namespace"] == monitor["metadata"]["namespace"]
        and selector_matches(monitor["spec"]["selector"], s["metadata"].get("labels", {}))
        and endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}
    ]
    workloads = _scaler_workloads(directory)
    assert workloads
    for workload in workloads:
        labels = _template(workload)["metadata"]["labels"]
        # The operator scrapes every endpoint of every selected Service: two Services, two scrapes per pod.
        scraped = [
            s["metadata"]["name"] for s in services if selector_matches({"matchLabels": s["spec"]["selector"]}, labels)
        ]
        assert scraped == [workload["metadata"]["name"]], f"{workload['metadata']['name']} is scraped through {scraped}"


def test_the_network_policy_covers_both_replicas() -> None:
    labels = _template(statefulset())["metadata"]["labels"]
    policies = [p for p in rendered(HA, "NetworkPolicy") if selector_matches(p["spec"]["podSelector"], labels)]
    assert len(policies) == 1


# -- examples/sharded --------------------------------------------------------------------------------------

# The routing connector's settings (opentelemetry-collector-contrib connector/routingconnector/README.md).
ROUTE_CONTEXTS = {"resource", "span", "metric", "datapoint", "log", "request"}
NAMESPACE_ROUTE = re.compile(r'attributes\["k8s\.namespace\.name"\] == "([a-z0-9-]+)"')


def gateway() -> Obj:
    (collector,) = [c for c in rendered(SHARDED, "OpenTelemetryCollector") if c["spec"]["mode"] == "deployment"]
    return collector


def routes() -> tuple[dict[str, list[str]], list[str]]:
    """namespace -> pipelines from the gateway's routing table, and the default pipelines."""
    routing = gateway()["spec"]["config"]["connectors"]["routing"]
    table: dict[str, list[str]] = {}
    for entry in routing["table"]:
        assert set(entry) <= {"context", "condition", "statement", "pipelines"}, entry
        assert entry.get("context", "resource") in ROUTE_CONTEXTS
        assert ("condition" in entry) != ("statement" in entry), "a route takes a condition or a statement"
        assert entry.get("context", "resource") == "resource", "one pod's batch goes to one shard whole"
        match = NAMESPACE_ROUTE.fullmatch(entry["condition"])
        assert match, f"not a route by namespace: {entry['condition']}"
        assert match.group(1) not in table, f"{match.group(1)} is routed twice"
        table[match.group(1)] = entry["pipelines"]
    return table, routing.get("default_pipelines", [])


def shard_of_pipeline(pipeline: str) -> str:
    """The scaler Service (name.namespace) a gateway pipeline exports to."""
    config = gateway()["spec"]["config"]
    spec = config["service"]["pipelines"][pipeline]
    assert spec["receivers"] == ["routing"], f"{pipeline} is not fed by the routing connector"
    (exporter,) = spec["exporters"]
    address, port = _endpoint(exporter.split("/")[0], config["exporters"][exporter])
    (service,) = [s for s in scaler_services() if s.resolves(address, port)]
    return f"{service.name}.{service.namespace}"


def test_the_gateway_routes_every_namespace_to_exactly_one_shard() -> None:
    table, default = routes()
    assert table and len(default) == 1, "a namespace the table misses must still reach a scaler"
    pipelines = gateway()["spec"]["config"]["service"]["pipelines"]
    fed = [name for name, p in pipelines.items() if "routing" in p.get("exporters", [])]
    assert [pipelines[n]["receivers"] for n in fed] == [["otlp"]], "one entry pipeline feeds the router"
    for routed in [*table.values(), default]:
        assert len(routed) == 1, "a namespace on two shards would be stored twice and asked once"
        shard_of_pipeline(routed[0])
    tenants = {n["metadata"]["name"] for n in rendered(SHARDED, "Namespace")}
    assert set(table) == tenants, "a route for a namespace that is not here, or a tenant with no route"


SHARDED_SCALED = rendered(SHARDED, "ScaledObject") if SHARDED.is_dir() else []


@pytest.mark.parametrize(
    "scaled", SHARDED_SCALED, ids=lambda o: f"{o['metadata']['namespace']}/{o['metadata']['name']}"
)
def test_each_scaledobject_asks_the_shard_its_series_go_to(scaled: Obj) -> None:
    table, default = routes()
    namespace = scaled["metadata"]["namespace"]
    (pipeline,) = table.get(namespace, default)
    shard = shard_of_pipeline(pipeline)
    for trigger in scaled["spec"]["triggers"]:
        address = trigger["metadata"]["scalerAddress"]
        asked = [f"{s.name}.{s.namespace}" for s in scaler_services() if s.resolves(address, "scaler")]
        assert asked == [shard], f"{namespace} is routed to {shard}, but its ScaledObject asks {address}"


def test_the_tenants_sidecars_export_to_the_gateway_with_their_namespace() -> None:
    meta = gateway()["metadata"]
    port = int(gateway()["spec"]["config"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rpartition(":")[2])
    # The OpenTelemetry operator's Service for a collector is <name>-collector (internal/naming/main.go).
    address = f"{meta['name']}-collector.{meta['namespace']}.svc:{port}"
    sidecars = [c for c in rendered(SHARDED, "OpenTelemetryCollector") if c["spec"]["mode"] == "sidecar"]
    assert {c["metadata"]["namespace"] for c in sidecars} == set(routes()[0])
    for sidecar in sidecars:
        assert [_endpoint(n.split("/")[0], s)[0] for n, s in _metrics_exporters(sidecar)] == [address]
        # What the routes read: the operator sets OTEL_RESOURCE_ATTRIBUTES, resourcedetection/env keeps them.
        config = sidecar["spec"]["config"]
        assert "env" in config["processors"]["resourcedetection/env"]["detectors"]
        assert "resourcedetection/env" in config["service"]["pipelines"]["metrics"]["processors"]


def test_each_shard_selects_only_its_own_pods() -> None:
    workloads = _scaler_workloads(SHARDED)
    assert [w["kind"] for w in workloads] == ["Deployment"] * len(workloads) and len(workloads) >= 2
    services = [s for s in rendered(SHARDED, "Service") if s["metadata"]["name"].startswith("keda-otel-scaler")]
    for service in services:
        chosen = [
            w
            for w in workloads
            if selector_matches({"matchLabels": service["spec"]["selector"]}, _template(w)["metadata"]["labels"])
        ]
        assert [w["metadata"]["name"] for w in chosen] == [service["metadata"]["name"]]
    for workload in workloads:
        others = [w for w in workloads if w is not workload]
        for other in others:
            assert not selector_matches(workload["spec"]["selector"], _template(other)["metadata"]["labels"])


def _otlp_peers(policy: Obj) -> list[Obj]:
    return [
        peer
        for rule in policy["spec"]["ingress"]
        if {p["port"] for p in rule.get("ports", [])} >= {"otlp-grpc"}
        for peer in rule.get("from", [])
    ]


def _admits(policy: Obj, labels: dict[str, str], namespace: str) -> bool:
    return any(
        selector_matches(peer.get("podSelector", {}), labels)
        and selector_matches(peer.get("namespaceSelector", {}), {"kubernetes.io/metadata.name": namespace})
        for peer in _otlp_peers(policy)
    )


def test_each_shard_takes_otlp_from_the_gateway_and_not_from_the_vllm_pods() -> None:
    # The operator puts the collector's own labels on its pods (internal/manifests/manifestutils/labels.go).
    gateway_labels = gateway()["metadata"]["labels"]
    vllm_pods = [
        (_template(d)["metadata"]["labels"], d["metadata"]["namespace"])
        for d in rendered(SHARDED, "Deployment")
        if d not in _scaler_workloads(SHARDED)
    ]
    assert vllm_pods
    for workload in _scaler_workloads(SHARDED):
        labels = _template(workload)["metadata"]["labels"]
        (policy,) = [
            p for p in rendered(SHARDED, "NetworkPolicy") if selector_matches(p["spec"]["podSelector"], labels)
        ]
        assert _admits(policy, gateway_labels, gateway()["metadata"]["namespace"]), workload["metadata"]["name"]
        for pod_labels, namespace in vllm_pods:
            assert not _admits(policy, pod_labels, namespace), "tenants must go through the gateway's routes"
