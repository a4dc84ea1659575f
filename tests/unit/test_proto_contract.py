"""Our externalscaler.proto speaks KEDA's wire contract, and the committed stubs are current.

The comparison with KEDA's own file needs it beside the repository (tests/keda_schemas.py says where);
the tests' KEDA client is built from our stubs, so that comparison is what ties the client to KEDA.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

from scaler.externalscaler import externalscaler_pb2
from tests.keda_contract import OUR_PROTO, ROOT, compile_descriptor_set
from tests.keda_schemas import keda_file


def _shape(file: descriptor_pb2.FileDescriptorProto) -> dict[str, object]:
    """Everything that reaches the wire: package, methods and every field's name, number and type."""

    def fields(msg: descriptor_pb2.DescriptorProto) -> dict[str, object]:
        return {
            "fields": sorted((f.name, f.number, f.type, f.label, f.type_name) for f in msg.field),
            "nested": {n.name: fields(n) for n in msg.nested_type},
            "map_entry": msg.options.map_entry,
        }

    return {
        "package": file.package,
        "syntax": file.syntax,
        "messages": {m.name: fields(m) for m in file.message_type},
        "services": {
            s.name: sorted(
                (m.name, m.input_type, m.output_type, m.client_streaming, m.server_streaming) for m in s.method
            )
            for s in file.service
        },
    }


def _compiled(proto: Path) -> descriptor_pb2.FileDescriptorProto:
    return next(f for f in compile_descriptor_set(proto).file if f.name == proto.name)


def _stubs() -> descriptor_pb2.FileDescriptorProto:
    ours = descriptor_pb2.FileDescriptorProto()
    externalscaler_pb2.DESCRIPTOR.CopyToProto(ours)
    return ours


def test_our_descriptors_match_kedas_proto() -> None:
    keda = _compiled(keda_file("externalscaler.proto"))
    assert _shape(_compiled(OUR_PROTO)) == _shape(keda)
    assert _shape(_stubs()) == _shape(keda)


def test_the_stubs_the_tests_call_with_are_our_proto() -> None:
    assert _shape(_stubs()) == _shape(_compiled(OUR_PROTO))


def test_contract_covers_the_four_keda_methods() -> None:
    service = externalscaler_pb2.DESCRIPTOR.services_by_name["ExternalScaler"]
    assert service.full_name == "externalscaler.ExternalScaler"
    assert {"IsActive", "StreamIsActive", "GetMetricSpec", "GetMetrics"} <= set(service.methods_by_name)


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    # protoc finds its mypy plugins (protoc-gen-mypy) on PATH: put this interpreter's bin first, so that the
    # venv's plugins are found whether or not the venv is activated.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    generate = [sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(tmp_path)]
    subprocess.run(generate, check=True, env={**os.environ, "PATH": path})
    generated = tmp_path / "scaler" / "externalscaler"
    committed = ROOT / "scaler" / "externalscaler"
    names = sorted(p.name for p in generated.iterdir())
    assert names, "generator wrote nothing"
    for name in names:
        fresh = (generated / name).read_text()
        assert (committed / name).read_text() == fresh, f"{name} is stale: run python proto/generate.py"
