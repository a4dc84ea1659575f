"""What the deployment tests share: rendering the kustomize directories and reading the Dockerfile.

Rendering runs the real `kubectl kustomize` (Debian's kubernetes-client in CI), once per directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
BASE = MANIFESTS / "base"
OBSERVABILITY = MANIFESTS / "observability"
EXAMPLES = MANIFESTS / "examples"
DOCKERFILE = ROOT / "Dockerfile"

Obj = dict[str, Any]


def kustomize_dirs() -> list[Path]:
    """Every kustomization under manifests/, base first."""
    found = sorted(p.parent for p in MANIFESTS.rglob("kustomization.yaml"))
    return sorted(found, key=lambda p: (p != BASE, str(p)))


def rel(path: Path) -> str:
    return str(path.relative_to(MANIFESTS))


def kubectl() -> str:
    found = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if found:
        return found
    message = "kubectl is not installed (Debian: apt-get install kubernetes-client); .ci/run installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message, allow_module_level=True)


@cache
def render(directory: Path) -> tuple[Obj, ...]:
    proc = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"kubectl kustomize {rel(directory)} failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def rendered(directory: Path, kind: str) -> list[Obj]:
    return [obj for obj in render(directory) if obj["kind"] == kind]


def all_rendered(kind: str) -> Iterator[tuple[Path, Obj]]:
    for directory in kustomize_dirs():
        for obj in rendered(directory, kind):
            yield directory, obj


def the(directory: Path, kind: str, name: str | None = None) -> Obj:
    matches = [o for o in rendered(directory, kind) if name is None or o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{rel(directory)}: expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def pod_template(obj: Obj) -> Obj | None:
    """The pod template of a workload, or None for other kinds."""
    if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        template: Obj = obj["spec"]["template"]
        return template
    return None


def selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against a label set."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def kubernetes_schema_errors(obj: Obj, versions: tuple[str, ...]) -> list[str]:
    """Where a core object breaks Kubernetes' own schemas (kubernetes-validate, strict), per version."""
    errors = []
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {version}) at {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {version}): {exc.message}")
    return errors


# -- the scaler's Service, as the base renders it ------------------------------------------------------


@dataclass(frozen=True)
class ScalerService:
    name: str
    namespace: str
    port_for: dict[str, int]  # container port name (targetPort) -> Service port

    def hosts(self) -> set[str]:
        short = f"{self.name}.{self.namespace}"
        return {f"{short}.svc", f"{short}.svc.cluster.local"}

    def resolves(self, address: str, container_port: str) -> bool:
        """Whether host:port reaches the container port of that name through this Service."""
        host, _, port = address.rpartition(":")
        return host in self.hosts() and port.isdigit() and int(port) == self.port_for.get(container_port)


def scaler_service() -> ScalerService:
    service = the(BASE, "Service")
    ports = {p["targetPort"]: p["port"] for p in service["spec"]["ports"]}
    return ScalerService(service["metadata"]["name"], service["metadata"]["namespace"], ports)


# -- the Dockerfile -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """JSON (exec) form arguments, or None for shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list), f"line {self.line}: exec form must be a JSON array"
        return [str(v) for v in value]

    def flags(self) -> tuple[dict[str, str], str]:
        """Leading --flag=value options (COPY --from=..., RUN --mount=...) and the rest."""
        rest = self.args.strip()
        options: dict[str, str] = {}
        while rest.startswith("--"):
            token, _, rest = rest.partition(" ")
            key, _, value = token[2:].partition("=")
            options[key] = (options[key] + "," + value) if key in options else value
            rest = rest.strip()
        return options, rest


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            tokens = shlex.split(instruction.args)
            if tokens and "=" not in tokens[0]:  # legacy `ENV key value`
                values[tokens[0]] = " ".join(tokens[1:])
                continue
            for token in tokens:
                key, _, value = token.partition("=")
                values[key] = value
        return values


@dataclass
class Dockerfile:
    args: dict[str, str]  # ARGs declared before the first FROM, with their defaults
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse_dockerfile(text: str) -> Dockerfile:
    """Docker's line grammar: comments, `\\` continuations (comment lines inside them dropped), stages."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, rest = " ".join(p for p in pending if p).partition(" ")
        instructions.append(Instruction(keyword.upper(), rest.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends inside a line continuation"

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert instruction.keyword == "ARG", f"line {instruction.line}: only ARG may precede FROM"
            key, _, default = instruction.args.partition("=")
            args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(args, stages)


@cache
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


def dockerfile_user() -> tuple[int, int | None]:
    """The final stage's USER as numbers (uid, gid)."""
    users = dockerfile().final.all("USER")
    assert users, "the final stage sets no USER"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1].args.strip())
    assert match, f"USER {users[-1].args!r} is not numeric uid[:gid]"
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None
