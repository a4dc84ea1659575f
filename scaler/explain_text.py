"""`keda-llm-scaler explain`: /debug/scaledobjects rendered as readable tables."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

_POD_COLUMNS = (
    ("pod", "pod"),
    ("running", "running"),
    ("waiting", "waiting"),
    ("kv", "kv"),
    ("prompt_rate", "prompt tok/s"),
    ("generation_rate", "gen tok/s"),
    ("preemption_rate", "preempt/s"),
    ("age", "age s"),
)


def fetch_triggers(scaler_url: str, timeout: float = 5.0) -> dict[str, Any]:
    url = scaler_url.rstrip("/") + "/debug/scaledobjects"
    with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - an operator-given URL
        payload: dict[str, Any] = json.load(reply)
    return payload


def render(payload: Mapping[str, Any], namespace: str | None = None, name: str | None = None) -> str:
    triggers = [
        t
        for t in payload.get("triggers", [])
        if (namespace is None or t["namespace"] == namespace) and (name is None or t["name"] == name)
    ]
    if not triggers:
        return "no triggers have been asked for yet (KEDA asks on every polling interval)\n"
    return "\n".join(_render_trigger(t) for t in triggers)


def _render_trigger(t: Mapping[str, Any]) -> str:
    state = "error" if t["error"] else ("active" if t["active"] else "inactive")
    value = "-" if t["value"] is None else _fmt(t["value"])
    if t["kind"] == "policy":
        head = f"{t['namespace']}/{t['name']}  policy {t['phase']}  pool {t['pool']}  -> {value} ({state})"
    else:
        head = f"{t['namespace']}/{t['name']}  query {t['query']} [{t['operationOverTime']}]  -> {value} ({state})"
    lines = [head, f"  metric {t['metric_name']}  target {_fmt(t['target'])}"]
    if t["error"]:
        lines.append(f"  error: {t['error']}")
    if t["kind"] == "policy" and "reason" in t:
        lines += _render_policy(t)
    elif t["kind"] == "query":
        rows = [[s["pod"] or "-", _fmt(s["value"]), _fmt(s["age_seconds"])] for s in t.get("series", [])]
        if rows:
            lines += _table(["pod", "value", "age s"], rows)
    return "\n".join(lines) + "\n"


def _render_policy(t: Mapping[str, Any]) -> list[str]:
    stable, panic = t["stable"], t["panic_window"]
    lines = [
        f"  reason: {t['reason']}",
        f"  reporting pods {t['reporting_pods']}  panic {'yes' if t['panic'] else 'no'}",
    ]
    rows = []
    for signal, figures in stable["signals"].items():
        in_panic = panic["signals"].get(signal, {}).get("replicas")
        rows.append(
            [signal, _fmt(figures["replicas"]), _fmt(figures["peak_replicas"]), _fmt(in_panic), figures["detail"]]
        )
    headers = [
        "signal",
        f"stable {_fmt(stable['window_seconds'])}s",
        "peak",
        f"panic {_fmt(panic['window_seconds'])}s",
        "detail",
    ]
    lines += _table(headers, rows)
    pods = [[_fmt(p.get(key)) if key != "pod" else p["pod"] for key, _ in _POD_COLUMNS] for p in t["pods"]]
    if pods:
        lines += _table([title for _, title in _POD_COLUMNS], pods)
    lines += [f"  note: {note}" for note in t["notes"]]
    return lines


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return ("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def explain_main(scaler_url: str, namespace: str | None, name: str | None) -> int:
    try:
        payload = fetch_triggers(scaler_url)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"keda-llm-scaler explain: cannot read {scaler_url}/debug/scaledobjects: {exc}")
        return 1
    print(render(payload, namespace, name), end="")
    return 0
