"""Where KEDA's own files are (externalscaler.proto, the ScaledObject and ScaledJob CRDs), for the checks against them.

They sit beside the repository, not in it: `$KEDA_SCHEMAS_DIR`, by default `../shared/vendor-schemas/keda`
from the repository root. Without them those checks skip, saying so; `KEDA_SCHEMAS_REQUIRED=1` (.ci/run sets
it) turns the skip into a failure, so CI cannot pass without them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT.parent / "shared" / "vendor-schemas" / "keda"
SKIP_REASON = "KEDA's schema files are not here"  # tests/conftest.py counts the skips by this prefix


def schemas_dir() -> Path:
    return Path(os.environ.get("KEDA_SCHEMAS_DIR") or DEFAULT_DIR)


def required() -> bool:
    return os.environ.get("KEDA_SCHEMAS_REQUIRED", "") not in ("", "0")


def keda_file(name: str) -> Path:
    """The path of one of KEDA's files; skips the calling test (fails it, when required) if it is absent."""
    path = schemas_dir() / name
    if path.is_file():
        return path
    message = f"{SKIP_REASON}: no {path} (set KEDA_SCHEMAS_DIR to the directory holding KEDA's {name})"
    if required():
        pytest.fail(f"{message}; KEDA_SCHEMAS_REQUIRED is set", pytrace=False)
    pytest.skip(message)
