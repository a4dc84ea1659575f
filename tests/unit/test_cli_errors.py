"""Command-line mistakes are answered with the flag and the expected form; explanations never show negative ages."""

from __future__ import annotations

from typing import Any

import pytest

from scaler import explain_text
from scaler.cli import main
from scaler.durations import parse_duration
from scaler.explain import describe_triggers
from scaler.keda_client import metadata_item
from scaler.otlp import Kind, Sample
from scaler.settings import attach_dash_values, parse_settings
from scaler.store import Store
from scaler.triggers import Triggers


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


# -- flags -------------------------------------------------------------------------------------------


def test_a_port_that_is_not_a_number_names_the_flag_and_the_range(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["serve", "--scaler-port", "abc"], capsys)
    assert code == 2
    assert "--scaler-port: 'abc' is not a port number: expected an integer 0-65535" in err
    assert "invalid literal" not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--max-series", "lots"], "--max-series: 'lots' is not a whole number"),
        (["--max-push-rate", "fast"], "--max-push-rate: 'fast' is not a number"),
        (["--retention", "120"], "--retention: invalid duration '120': a number needs a unit: write 120s"),
    ],
)
def test_other_numbers_say_what_is_expected(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["serve", *argv], capsys)
    assert code == 2
    assert expected in err


def test_a_bare_number_is_refused_saying_which_unit_to_add() -> None:
    with pytest.raises(ValueError, match=r"invalid duration '90': a number needs a unit: write 90s for seconds"):
        parse_duration("90")
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration("-1s")


@pytest.mark.parametrize("command", ["demo", "sim-pod", "sim-fleet"])
def test_simulation_durations_name_the_flag_and_the_form(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    flag = {"demo": "--duration", "sim-pod": "--export-interval", "sim-fleet": "--cold-start"}[command]
    code, _, err = run_cli([command, flag, "90"], capsys)
    assert code == 2
    assert f"argument {flag}: invalid duration '90': a number needs a unit: write 90s" in err
    assert "parse_duration" not in err and "_duration" not in err


def test_demo_counts_and_speed_say_what_is_expected(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in (
        (["--speed", "0"], "argument --speed: must be a number above 0"),
        (["--burst-clients", "many"], "argument --burst-clients: 'many' is not a whole number"),
        (["--duration=-5s"], "argument --duration: invalid duration '-5s': must not be negative"),
    ):
        code, _, err = run_cli(["demo", *argv], capsys)
        assert code == 2
        assert expected in err


@pytest.mark.parametrize("argv", [["--warmup", "-1s"], ["--warmup=-1s"]])
def test_a_negative_duration_is_a_value_not_a_flag(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["serve", *argv], capsys)
    assert code == 2
    assert "--warmup: invalid duration '-1s': must not be negative" in err
    assert "expected one argument" not in err


def test_attach_dash_values_only_attaches_what_looks_like_a_negative_number() -> None:
    assert attach_dash_values(["--warmup", "-1s", "--grace", "5s"]) == ["--warmup=-1s", "--grace", "5s"]
    assert attach_dash_values(["--speed", "-.5"]) == ["--speed=-.5"]
    assert attach_dash_values(["--isolate-namespaces", "--host", "h"]) == ["--isolate-namespaces", "--host", "h"]
    assert attach_dash_values(["--a=1", "-2"]) == ["--a=1", "-2"]
    assert parse_settings(["--grace", "5s"], {}).grace == 5.0


def test_an_unknown_flag_gets_the_commands_own_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["serve", "--no-such-flag"], capsys)
    assert code == 2
    assert err.startswith("usage: keda-llm-scaler serve")
    assert "keda-llm-scaler serve: error: unrecognized arguments: --no-such-flag" in err


def test_stream_resend_must_be_a_positive_duration(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_settings([], {}).stream_resend == 5.0
    assert parse_settings([], {"SCALER_STREAM_RESEND": "500ms"}).stream_resend == 0.5
    code, _, err = run_cli(["serve", "--stream-resend", "0s"], capsys)
    assert code == 2
    assert "--stream-resend: must be longer than 0" in err


def test_serve_help_shows_defaults_as_the_readme_writes_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # no wrapping inside a default
    code, out, _ = run_cli(["serve", "--help"], capsys)
    assert code == 0
    text = " ".join(out.split())
    for shown in (
        "[default: 120s]",
        "[default: 30s]",
        "[default: --stale-after]",
        "[default: 5s]",
        "[default: 16MiB]",
        "[default: false]",
        "[default: none]",
        "[default: 1000000]",
        "env SCALER_STREAM_RESEND",
    ):
        assert shown in text, shown
    assert "120.0" not in text and "16777216" not in text and "1e+06" not in text


def test_ask_metadata_must_be_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert metadata_item('metricQuery=sum(x{a="b"})') == ("metricQuery", 'sum(x{a="b"})')
    code, _, err = run_cli(["ask", "--scaler", "127.0.0.1:1", "targetValue"], capsys)
    assert code == 2
    assert "'targetValue': expected trigger metadata as key=value" in err


# -- explain -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("localhost:8080", "http://localhost:8080"),
        ("10.0.0.5:8080", "http://10.0.0.5:8080"),
        ("https://scaler.keda:8080/", "https://scaler.keda:8080/"),
    ],
)
def test_explain_takes_an_address_without_a_scheme_as_http(given: str, url: str) -> None:
    assert explain_text.ops_url(given) == url


@pytest.mark.parametrize("given", ["ftp://scaler:8080", "http://", "localhost:port"])
def test_explain_refuses_other_urls_saying_what_is_expected(given: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["explain", "--scaler-url", given], capsys)
    assert code == 2
    assert "argument --scaler-url:" in err and "http://127.0.0.1:8080" in err


def _trigger(namespace: str, name: str) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": name,
        "kind": "query",
        "query": "sum(x)",
        "operationOverTime": "last_one",
        "metric_name": "x-0",
        "target": 1.0,
        "value": 1.0,
        "active": True,
        "error": None,
        "series": [],
    }


def test_explain_an_unknown_name_lists_the_known_triggers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = {"triggers": [_trigger("ns", "llama-decode"), _trigger("ns", "llama-prefill"), _trigger("b", "x")]}
    monkeypatch.setattr(explain_text, "fetch_triggers", lambda url: payload)
    code, out, err = run_cli(["explain", "--scaler-url", "localhost:8080", "--name", "nothere"], capsys)
    assert code == 1 and out == ""
    assert "no trigger with name 'nothere' has been asked for" in err
    assert "KEDA has asked for: b/x, ns/llama-decode, ns/llama-prefill" in err
    assert "no triggers have been asked for yet" in explain_text.render({"triggers": []}, name="nothere")
    code, out, _ = run_cli(["explain", "--scaler-url", "localhost:8080", "--name", "x"], capsys)
    assert code == 0 and out.startswith("b/x  query sum(x)")


# -- ages in explanations ----------------------------------------------------------------------------

QUERY = {"metricQuery": 'sum(vllm:num_requests_running{namespace="ns"})', "targetValue": "4"}


def _gauge(name: str, value: float, pod: str, **labels: str) -> Sample:
    base = {"k8s.namespace.name": "ns", "k8s.pod.name": pod, **labels}
    return Sample(name, tuple(sorted(base.items())), Kind.GAUGE, value)


def _only(triggers: Triggers, now: float) -> dict[str, Any]:
    [described] = describe_triggers(triggers, now)["triggers"]
    assert isinstance(described, dict)
    return described


def test_query_trigger_ages_move_with_pushes_and_never_go_negative() -> None:
    store = Store(retention=120.0, max_series=100)
    triggers = Triggers(store, stale_after=30.0, warmup_until=0.0)
    store.append([_gauge("vllm:num_requests_running", 2, "p0")], now=10.0)
    triggers.evaluate("ns", "so", QUERY, now=10.0)

    store.append([_gauge("vllm:num_requests_running", 3, "p0")], now=12.0)  # after KEDA asked
    described = _only(triggers, now=13.0)
    assert described["series"][0]["age_seconds"] == 1.0  # was 10 - 12 = -2 against the answer's time
    assert described["last_data_seconds_ago"] == 1.0  # was frozen at 13 - 10 = 3 until KEDA asks again

    store.append([_gauge("vllm:num_requests_running", 3, "p0")], now=14.0)
    described = _only(triggers, now=14.5)
    assert described["series"][0]["age_seconds"] == 0.5
    assert described["last_data_seconds_ago"] == 0.5
    assert described["last_asked_seconds_ago"] == 4.5
    assert _only(triggers, now=13.9)["series"][0]["age_seconds"] == 0.0  # a sample newer than `now`: age 0


def test_policy_pod_ages_move_with_pushes() -> None:
    store = Store(retention=120.0, max_series=100)
    triggers = Triggers(store, stale_after=30.0, warmup_until=0.0)
    policy = {"policy": "vllm", "deployment": "d", "phase": "decode", "targetRunningPerPod": "4"}
    running = ("vllm:num_requests_running", "vllm:kv_cache_usage_perc")
    store.append([_gauge(name, 1, "p0", deployment="d") for name in running], now=10.0)
    triggers.evaluate("ns", "so", policy, now=10.0)
    store.append([_gauge(name, 1, "p0", deployment="d") for name in running], now=20.0)
    described = _only(triggers, now=21.0)
    [pod] = described["pods"]
    assert pod["age"] == 1.0
    assert described["last_data_seconds_ago"] == 1.0
