"""Regenerate the KEDA gRPC stubs in scaler/externalscaler/ from proto/externalscaler.proto.

Run `python proto/generate.py` after editing the .proto; `--out DIR` writes elsewhere (the staleness
test uses it). The tool versions are pinned so that the output is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path

PINNED = {"grpcio-tools": "1.85.1", "mypy-protobuf": "5.1.0"}
ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = "scaler/externalscaler"
GENERATED = (
    "externalscaler_pb2.py",
    "externalscaler_pb2.pyi",
    "externalscaler_pb2_grpc.py",
    "externalscaler_pb2_grpc.pyi",
)


def check_pins() -> None:
    wrong = {name: version(name) for name, want in PINNED.items() if version(name) != want}
    if wrong:
        sys.exit(f"proto/generate.py needs {PINNED}, found {wrong}")


def generate(out: Path) -> None:
    from grpc_tools import protoc

    # The virtual include path makes the generated grpc module import its _pb2 sibling by its
    # package path (scaler.externalscaler.externalscaler_pb2) instead of as a top-level module.
    args = [
        "protoc",
        f"-I{PACKAGE_DIR}={ROOT / 'proto'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"{PACKAGE_DIR}/externalscaler.proto",
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="root to write scaler/externalscaler/ under")
    ns = parser.parse_args()
    check_pins()
    generate(ns.out)


if __name__ == "__main__":
    main()
