"""The package's public API: exactly the names in `scaler.__all__`, each the real object."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import scaler
from scaler import errors, expression, otlp, store

PUBLIC_API = {
    "ScalerError": errors.ScalerError,
    "StaleData": errors.StaleData,
    "Sample": otlp.Sample,
    "Store": store.Store,
    "decode_export_request": otlp.decode_export_request,
    "parse_query": expression.parse_query,
}
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_all_is_exactly_the_intended_public_api() -> None:
    assert sorted(scaler.__all__) == sorted([*PUBLIC_API, "__version__"])
    assert len(scaler.__all__) == len(set(scaler.__all__))


def test_every_exported_name_exists_and_is_the_real_object() -> None:
    for name, obj in PUBLIC_API.items():
        assert getattr(scaler, name) is obj, name


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from scaler import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(scaler.__all__)


def test_version_matches_pyproject_and_installed_metadata() -> None:
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert scaler.__version__ == declared
    assert importlib.metadata.version("keda-llm-scaler") == declared


def test_exported_errors_form_the_documented_hierarchy() -> None:
    assert issubclass(scaler.StaleData, scaler.ScalerError)
    assert (scaler.StaleData.grpc_code, scaler.StaleData.http_status) == ("UNAVAILABLE", 503)
    assert (scaler.ScalerError.grpc_code, scaler.ScalerError.http_status) == ("INTERNAL", 500)
