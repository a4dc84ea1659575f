"""The Dockerfile, read as Docker reads it: no container engine here, so its properties are checked.

A wheel is built in one stage and installed into a slim runtime without build tools, which runs as
a numeric non-root user, exposes the default ports, starts `keda-llm-scaler serve` and writes nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

from scaler.settings import Settings
from tests.manifests_support import ROOT, Dockerfile, dockerfile, dockerfile_user, parse_dockerfile

BUILD_TOOLS = re.compile(
    r"\b(apt-get|apt|apk|yum|dnf|microdnf)\s+(-\S+\s+)*install\b|\bgcc\b|\bg\+\+|\bbuild-essential\b|"
    r"\bhatchling\b|\bpython -m build\b|\bgrpcio-tools\b|\bpip wheel\b|\bpoetry\b|\buv build\b"
)


def _runs(stage_index: int) -> str:
    return "\n".join(i.args for i in dockerfile().stages[stage_index].all("RUN"))


def test_the_parser_reads_continuations_comments_and_stages() -> None:
    parsed = parse_dockerfile(
        "# syntax=docker/dockerfile:1\nARG IMG=python:3.11-slim\nFROM ${IMG} AS build\n"
        'RUN a \\\n    # a comment inside\n    && b\nFROM $IMG\nENV A=1 B="two words"\nENV C 3\n'
        'ENTRYPOINT ["x", "y"]\n'
    )
    assert [(s.base, s.name) for s in parsed.stages] == [("python:3.11-slim", "build"), ("python:3.11-slim", None)]
    assert parsed.stages[0].all("RUN")[0].args == "a && b"
    assert parsed.final.env() == {"A": "1", "B": "two words", "C": "3"}
    assert parsed.final.all("ENTRYPOINT")[0].exec_form() == ["x", "y"]


def test_it_is_multi_stage_and_builds_a_wheel_first() -> None:
    parsed: Dockerfile = dockerfile()
    assert len(parsed.stages) >= 2
    build_stages = [i for i, s in enumerate(parsed.stages[:-1]) if "pip wheel" in _runs(i)]
    assert build_stages, "no stage before the last builds a wheel (pip wheel)"
    build = parsed.stages[build_stages[-1]]
    assert build.name, "the wheel stage needs a name for the runtime stage to refer to"
    # The runtime installs those wheels, offline, from the build stage.
    runtime_runs = parsed.final.all("RUN")
    installs = [r for r in runtime_runs if "pip install" in r.args]
    assert installs, "the runtime stage installs nothing"
    options, command = installs[0].flags()
    assert "--no-index" in command, "the runtime must install only the wheels the build stage made"
    copied_from = {i.flags()[0].get("from") for i in parsed.final.all("COPY")}
    mounted_from = re.findall(r"from=([\w.-]+)", options.get("mount", ""))
    assert build.name in copied_from | set(mounted_from), "the runtime stage does not take the build stage's wheels"


def test_the_runtime_is_slim_and_has_no_build_tools() -> None:
    final = dockerfile().final
    assert "slim" in final.base or "distroless" in final.base, f"runtime base {final.base!r} is not a slim image"
    assert not BUILD_TOOLS.search(_runs(len(dockerfile().stages) - 1)), "the runtime stage installs build tools"
    for copy in final.all("COPY") + final.all("ADD"):
        assert "from" in copy.flags()[0], f"line {copy.line}: the runtime copies the source tree, not wheels"
    # pip, setuptools and wheel ship with the Python image: the runtime removes them.
    uninstall = re.search(r"pip uninstall[^&;]*", _runs(len(dockerfile().stages) - 1))
    assert uninstall and all(tool in uninstall.group(0).split() for tool in ("pip", "setuptools", "wheel"))


def test_it_runs_as_a_numeric_non_root_user() -> None:
    uid, gid = dockerfile_user()
    assert uid != 0
    assert gid != 0


def test_it_exposes_the_default_ports() -> None:
    defaults = Settings()
    wanted = {defaults.otlp_grpc_port, defaults.otlp_http_port, defaults.scaler_port, defaults.http_port}
    exposed = {int(p.split("/")[0]) for e in dockerfile().final.all("EXPOSE") for p in e.args.split()}
    assert exposed == wanted


def test_the_entrypoint_is_serve() -> None:
    final = dockerfile().final
    entrypoints = final.all("ENTRYPOINT")
    assert entrypoints, "no ENTRYPOINT"
    assert entrypoints[-1].exec_form() == ["keda-llm-scaler", "serve"], "ENTRYPOINT must be exec form"
    assert not final.all("CMD"), "a CMD would add arguments to serve; settings come from SCALER_* variables"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "keda-llm-scaler" in scripts


def test_it_works_with_a_read_only_root_filesystem() -> None:
    final = dockerfile().final
    assert final.env().get("PYTHONDONTWRITEBYTECODE") == "1"
    assert "--no-compile" not in _runs(len(dockerfile().stages) - 1), "bytecode must be compiled at install time"
    assert not final.all("VOLUME"), "nothing in the image needs a writable volume"
    for check in final.all("HEALTHCHECK"):
        _, command = check.flags()
        keyword, _, form = command.partition(" ")
        assert keyword.upper() == "CMD" and json.loads(form)[0] == "python", "healthcheck needs no curl or shell"


# -- the build context -----------------------------------------------------------------------------------


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            members = pattern[i + 1 : end]
            negated = members[:1] in {"!", "^"}
            out += "[" + ("^" if negated else "") + re.escape(members[1:] if negated else members) + "]"
            i = end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def build_context_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins; `!` re-includes."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip().strip("/")
        regex = _dockerignore_regex(pattern)
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_the_dockerignore_matcher_follows_docker() -> None:
    patterns = ["*", "!scaler/", "**/__pycache__", "**/*.py[cod]"]
    assert build_context_excludes(".git/HEAD", patterns)
    assert not build_context_excludes("scaler/app.py", patterns)
    assert build_context_excludes("scaler/__pycache__/app.cpython-311.pyc", patterns)
    assert build_context_excludes("scaler/stray.pyc", patterns)
    assert not build_context_excludes("scaler/app.pyi", patterns)


def test_the_build_context_holds_what_the_wheel_needs_and_nothing_else() -> None:
    patterns = _dockerignore()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    needed = {"pyproject.toml", project["project"]["readme"], *packages}
    # The build stage copies exactly those.
    build = next(s for s in dockerfile().stages if "pip wheel" in "\n".join(i.args for i in s.all("RUN")))
    copied = {src.rstrip("/").removeprefix("./") for c in build.all("COPY") for src in c.flags()[1].split()[:-1]}
    assert copied == needed

    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    sent = {f for f in files if not build_context_excludes(f, patterns)}
    assert sent, "the build context is empty"
    for path in sent:
        assert path.split("/")[0] in needed, f"{path} is sent to the build but the wheel does not need it"
    for path in needed:
        assert any(f == path or f.startswith(path + "/") for f in sent), f"{path} is kept out of the build"
    for private in (".venv/bin/python", ".git/HEAD", "tests/unit/test_dockerfile.py"):
        assert build_context_excludes(private, patterns)


def test_the_deploy_doc_gives_the_build_command() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    assert re.search(r"^docker build -t \S+ \.$", doc, re.MULTILINE)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"keda-llm-scaler:{version}" in doc
