"""`keda-llm-scaler explain`: /debug/scaledobjects rendered as readable tables."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
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


def ops_url(text: str) -> str:
    """argparse `type=`: the ops HTTP address; `host:port` means `http://host:port`."""
    url = text.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected the scaler's ops HTTP address, like http://127.0.0.1:8080"
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the port is not a number; expected e.g. http://127.0.0.1:8080"
        ) from None
    return url


def fetch_triggers(scaler_url: str, timeout: float = 5.0) -> dict[str, Any]:
    url = scaler_url.rstrip("/") + "/debug/scaledobjects"
    with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - an operator-given URL
        payload: dict[str, Any] = json.load(reply)
    return payload


def selected(payload: Mapping[str, Any], namespace: str | None, name: str | None) -> list[Mapping[str, Any]]:
    return [
        t
        for t in payload.get("triggers", [])
        if (namespace is None or t["namespace"] == namespace) and (name is None or t["name"] == name)
    ]


def render(payload: Mapping[str, Any], namespace: str | None = None, name: str | None = None) -> str:
    triggers = selected(payload, namespace, name)
    if triggers:
        return "\n".join(_render_trigger(t) for t in triggers)
    known = sorted({f"{t['namespace']}/{t['name']}" for t in payload.get("triggers", [])})
    if not known:
        return "no triggers have been asked for yet (KEDA asks on every polling interval)\n"
    wanted = " ".join(f"{k} {v!r}" for k, v in (("namespace", namespace), ("name", name)) if v is not None)
    return f"no trigger with {wanted} has been asked for; KEDA has asked for: {', '.join(known)}\n"


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
    lines = [f"  reason: {t['reason']}", "  " + "  ".join(_pool_state(t))]
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


def _pool_state(t: Mapping[str, Any]) -> list[str]:
    """Pods reporting and awaited, the cold start and where it came from, panic, the gateway's demand."""
    parts = [f"reporting pods {t['reporting_pods']}"]
    if "in_flight_pods" in t:  # a scaler from before in-flight accounting leaves them out
        flight = f"in flight {t['in_flight_pods']}"
        if t["late_pods"]:
            flight += f" (+{t['late_pods']} late)"
        parts += [flight, f"cold start {_fmt(t['cold_start_seconds'])}s ({t['cold_start_source']})"]
    parts.append(f"panic {'yes' if t['panic'] else 'no'}")
    if t.get("demand_value") is not None:
        parts.append(f"gateway demand {_fmt(t['demand_value'])}")
    return parts


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
    """Print the explanation; 1 when the scaler cannot be read or knows no trigger by that name."""
    try:
        payload = fetch_triggers(scaler_url)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"keda-llm-scaler explain: cannot read {scaler_url}/debug/scaledobjects: {exc}", file=sys.stderr)
        return 1
    text = render(payload, namespace, name)
    if payload.get("triggers") and not selected(payload, namespace, name):
        print(text, end="", file=sys.stderr)
        return 1
    print(text, end="")
    return 0
