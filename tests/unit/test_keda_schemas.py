"""The checks against KEDA's own files skip without them, naming KEDA_SCHEMAS_DIR, and fail instead when required."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.keda_schemas import DEFAULT_DIR, ROOT, keda_file, schemas_dir


def test_the_default_is_beside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEDA_SCHEMAS_DIR", raising=False)
    assert schemas_dir() == DEFAULT_DIR == ROOT.parent / "shared" / "vendor-schemas" / "keda"


def test_a_present_file_is_found_where_the_variable_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "externalscaler.proto").write_text('syntax = "proto3";\n')
    monkeypatch.setenv("KEDA_SCHEMAS_DIR", str(tmp_path))
    monkeypatch.setenv("KEDA_SCHEMAS_REQUIRED", "1")
    assert keda_file("externalscaler.proto") == tmp_path / "externalscaler.proto"


def test_an_absent_file_skips_naming_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEDA_SCHEMAS_DIR", str(tmp_path))
    monkeypatch.delenv("KEDA_SCHEMAS_REQUIRED", raising=False)
    with pytest.raises(pytest.skip.Exception, match="KEDA_SCHEMAS_DIR"):
        keda_file("keda.sh_scaledobjects.yaml")


@pytest.mark.parametrize("flag", ["1", "yes"])
def test_an_absent_file_fails_when_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str) -> None:
    monkeypatch.setenv("KEDA_SCHEMAS_DIR", str(tmp_path))
    monkeypatch.setenv("KEDA_SCHEMAS_REQUIRED", flag)
    with pytest.raises(pytest.fail.Exception, match="KEDA_SCHEMAS_REQUIRED"):
        keda_file("keda.sh_scaledobjects.yaml")


def test_required_0_or_empty_is_not_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEDA_SCHEMAS_DIR", str(tmp_path))
    for flag in ("0", ""):
        monkeypatch.setenv("KEDA_SCHEMAS_REQUIRED", flag)
        with pytest.raises(pytest.skip.Exception):
            keda_file("externalscaler.proto")
