"""The README stays true: every serve flag is in its table, and the kedify comparison covers each case."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from scaler.durations import parse_duration
from scaler.settings import _FLAGS, env_name, shown_default

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _table_rows(heading: str) -> list[str]:
    section = README.split(heading, 1)[1]
    section = section.split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("|---")]


def test_every_serve_flag_is_in_the_readme_with_its_env_and_default() -> None:
    rows = _table_rows("## `keda-llm-scaler serve`")
    for flag in _FLAGS:
        row = next((r for r in rows if f"`--{flag}`" in r), None)
        assert row is not None, f"--{flag} is missing from the README's serve table"
        assert f"`{env_name(flag)}`" in row, f"--{flag}: the README does not name {env_name(flag)}"
        cells = [c.strip() for c in row.strip("|").split("|")]
        if flag not in ("warmup",) and "," not in cells[0]:  # paired rows (tls-cert, tls-key) share a cell
            assert f"`{shown_default(flag)}`" in cells[2] or cells[2] == "none", (flag, cells[2])


def test_the_kedify_comparison_covers_every_case_users_meet() -> None:
    rows = " ".join(_table_rows("## Differences from kedify's otel-add-on")).lower()
    for case in (
        "stale",
        "lacks a queried label",
        "unknown metadata key",
        "unknown `operationovertime`",
        "`rate` of one sample",
        "otlp/http",
        "resource attributes",
        "after a restart",
        "`streamisactive`",
    ):
        assert case in rows, f"the differences table has no row for {case!r}"


def test_demo_and_evaluate_outputs_are_ignored_by_git() -> None:
    found = subprocess.run(
        ["git", "check-ignore", "demo-out/demo.png", "eval-out/results.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode == 128:  # not a git checkout (an sdist): nothing to check
        return
    assert found.stdout.split() == ["demo-out/demo.png", "eval-out/results.json"]


def test_readme_durations_parse() -> None:
    """Each `--flag` default the README shows as a duration is one `serve` accepts."""
    for value in re.findall(r"\| `(\d+(?:ms|s|m|h))` \|", README):
        parse_duration(value)
