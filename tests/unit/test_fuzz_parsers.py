"""Fuzzing the parsers the OTLP, query and duration tests leave out: trigger metadata, token files,
settings and admission. Each input yields a value or the parser's own error, never anything else.

Trigger evaluation is fuzzed too, over stored values up to the float limits: a trigger answers a finite
value KEDA can carry, or one of our errors, never an arithmetic exception (which gRPC turns into UNKNOWN).
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections import Counter
from dataclasses import fields

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scaler.admission import Limits, screen
from scaler.errors import InvalidTrigger, ScalerError
from scaler.expression import Matcher
from scaler.names import NAMESPACE_KEYS
from scaler.otlp import Decoded, Histogram, Kind, Sample
from scaler.policy_spec import POLICY_KEYS, PolicySpec
from scaler.settings import _FLAGS, Settings, SettingsError, env_name, parse_settings
from scaler.store import Store
from scaler.tokens import TokenFileError, authenticate, parse_tokens
from scaler.triggers import (
    KEDA_MAX_VALUE,
    PASS_THROUGH_KEYS,
    QUERY_KEYS,
    QueryTrigger,
    Triggers,
    metric_name_matches,
    parse_trigger,
)

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
METRIC_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?-[0-9a-f]{10}")

# -- trigger metadata --------------------------------------------------------------------------------

_numbers = st.sampled_from(["0", "1", "4.000000", "-1", "0.5", "1e3", "1e400", "nan", "inf", "-inf", " 7 ", "", "1_0"])
_durations = st.sampled_from(["30s", "500ms", "1m30s", "0s", "6s", "60s", "30", "-5s", "1h", "9" * 400 + "h"])
_queries = st.sampled_from(
    [
        'sum(vllm:num_requests_running{namespace="ns", deployment="isvc-predictor"})',
        "vllm:num_requests_waiting",
        'max(x{a=~"(b|c)+", d!~"e"})',
        "count(m{})",
        "sum(m",
        'm{a=~"("}',
        "",
        "avg(" * 50,
    ]
)
_selectors = st.sampled_from(['llm-d.ai/role="decode"', 'version="v2", x=~"a|b"', "role=", '"', ""])
_words = st.sampled_from(
    ["vllm", "VLLM", "unified", "prefill", "decode", "last_one", "rate", "avg", "llama", "ns", "other", "Rate"]
)
_value = st.one_of(_numbers, _durations, _queries, _selectors, _words, st.text(max_size=12))
_key = st.one_of(
    st.sampled_from(QUERY_KEYS + POLICY_KEYS + tuple(PASS_THROUGH_KEYS) + ("targetValueFromEnv", "metricquery")),
    st.text(max_size=10),
)
_namespace = st.sampled_from(["", "ns", "other", "ns-2"])


@st.composite
def _metadata(draw: st.DrawFn) -> dict[str, str]:
    base = draw(
        st.sampled_from(
            [
                {},
                {"metricQuery": "vllm:num_requests_running", "targetValue": "4"},
                {"policy": "vllm", "deployment": "llama"},
                {"policy": "vllm", "podSelector": 'role="decode"', "phase": "decode"},
            ]
        )
    )
    return {**base, **draw(st.dictionaries(_key, _value, max_size=6))}


def _namespace_matchers(matchers: tuple[Matcher, ...]) -> list[Matcher]:
    return [m for m in matchers if m.label == "namespace"]


@FUZZ
@given(_metadata(), _namespace, st.booleans())
def test_any_metadata_is_a_trigger_or_invalid_trigger(metadata: dict[str, str], namespace: str, isolate: bool) -> None:
    try:
        spec = parse_trigger(metadata, namespace, isolate)
    except InvalidTrigger as exc:
        assert str(exc)
        return
    assert METRIC_NAME.fullmatch(spec.metric_name), spec.metric_name
    assert metric_name_matches(spec.metric_name.upper(), spec.metric_name)
    assert metric_name_matches(f"s3-{spec.metric_name}", spec.metric_name)
    assert math.isfinite(spec.target) and spec.target > 0
    assert parse_trigger(dict(reversed(metadata.items())), namespace, isolate) == spec
    if isinstance(spec, QueryTrigger):
        assert "policy" not in metadata
        assert spec.window is None or spec.window > 0
        matchers = spec.query.selector.matchers
    else:
        assert isinstance(spec, PolicySpec)
        assert spec.panic_window <= spec.stable_window
        matchers = spec.selector.matchers
    if isolate:  # a ScaledObject reads only its own namespace, whatever its metadata says
        assert Matcher("namespace", "=", namespace) in _namespace_matchers(matchers)
        if isinstance(spec, PolicySpec) and spec.activation is not None:
            assert Matcher("namespace", "=", namespace) in spec.activation.query.selector.matchers


# -- token files -------------------------------------------------------------------------------------

_token_chars = st.characters(codec="utf-8", exclude_categories=("Cs",))
_token_line = st.one_of(
    st.text(_token_chars, max_size=40),
    st.builds(
        lambda token, ns, comment: f"{token} {ns} {comment}".rstrip(),
        st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=10, max_size=24),
        st.sampled_from(["", "ns", "team-a", "a b"]),
        st.sampled_from(["", "# bound", "#"]),
    ),
)


@FUZZ
@given(st.lists(_token_line, max_size=6).map("\n".join))
def test_any_token_file_is_tokens_or_a_token_file_error(text: str) -> None:
    try:
        tokens = parse_tokens(text)
    except TokenFileError as exc:
        assert str(exc)
        return
    assert tokens
    for token, namespace in tokens.items():
        assert len(token) >= 16 and "#" not in token and token.split() == [token]
        assert namespace is None or namespace.split() == [namespace]
        principal = authenticate(tokens, f"Bearer {token}")
        assert principal is not None and principal.namespace == namespace
        assert token not in principal.name  # logs and metrics name the token's position, never the secret
        assert authenticate(tokens, f"Bearer {token}x") is None or f"{token}x" in tokens
    rewritten = "\n".join(f"{t} {ns or ''}" for t, ns in tokens.items())
    assert parse_tokens(rewritten) == tokens


@FUZZ
@given(st.text(max_size=60) | st.none())
def test_any_authorization_header_is_a_known_token_or_none(header: str | None) -> None:
    tokens = {"token-for-namespace-ns-0123456789": "ns", "token-for-every-namespace-0123": None}
    principal = authenticate(tokens, header)
    if principal is not None:
        assert header is not None and header.split()[-1] in tokens


# -- settings ----------------------------------------------------------------------------------------

_flag_values = st.one_of(
    st.sampled_from(["0", "4317", "65536", "-1", "30s", "0s", "500ms", "2m", "16MiB", "1KiB", "12", "1e3"]),
    st.sampled_from(["true", "off", "maybe", "json", "text", "debug", "nan", "inf", "/dev/null", "/nonexistent"]),
    st.sampled_from(["", " ", "\x00", "9" * 5000, "1" * 40 + "GiB", "127.0.0.1"]),
    st.text(max_size=8),
)
_argv = st.lists(
    st.one_of(
        st.sampled_from([f"--{flag}" for flag in _FLAGS]).flatmap(lambda f: st.tuples(st.just(f), _flag_values)),
        st.tuples(st.sampled_from(["--isolate-namespaces", "--bogus", "-h", "--ho", "--"])),
        st.tuples(st.text(max_size=6)),
    ),
    max_size=5,
).map(lambda parts: [arg for part in parts for arg in part])
_environ = st.dictionaries(st.sampled_from([env_name(f) for f in _FLAGS] + ["SCALER_BOGUS"]), _flag_values, max_size=4)


@FUZZ
@given(_argv, _environ)
def test_any_command_line_is_settings_or_a_clear_refusal(argv: list[str], environ: dict[str, str]) -> None:
    assume("\x00" not in "".join(environ.values()))  # the environment cannot hold NUL
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            result = parse_settings(argv, environ)
        except SettingsError as exc:
            assert str(exc).startswith(("--", "ports must differ")), exc  # it names the flag(s)
            return
        except SystemExit as exc:  # argparse: unknown flag, missing value, --help
            assert exc.code in (0, 2)
            return
    assert isinstance(result, Settings)
    assert 0 < result.stale_after <= result.retention
    assert result.warmup >= 0 and result.grace >= 0 and result.max_push_rate >= 0
    assert math.isfinite(result.max_push_rate)
    for field in fields(Settings):
        if field.name.endswith("_port"):
            assert 0 <= getattr(result, field.name) <= 65535
    assert (result.tls_cert is None) == (result.tls_key is None)
    assert result.max_request_bytes >= 1024 and result.max_series >= 1


# -- admission ---------------------------------------------------------------------------------------

_label_key = st.sampled_from(["namespace", "k8s.namespace.name", "pod", "engine", "x" * 20]) | st.text(max_size=24)
_label_value = st.sampled_from(["ns", "other", "", "y" * 40]) | st.text(max_size=24)
_sample = st.builds(
    lambda name, labels, value: Sample(name, tuple(sorted(labels.items())), Kind.GAUGE, value),
    st.sampled_from(["vllm:num_requests_running", "m" * 30]) | st.text(max_size=24),
    st.dictionaries(_label_key, _label_value, max_size=8),
    st.floats(allow_nan=False),
)


@FUZZ
@given(
    st.lists(_sample, max_size=8),
    st.dictionaries(st.sampled_from(["non_finite", "series_limit"]), st.integers(1, 5), max_size=2),
    st.builds(Limits, st.integers(1, 10), st.integers(1, 32)),
    st.none() | _namespace,
)
def test_screen_keeps_exactly_the_points_within_limits(
    samples: list[Sample], earlier: dict[str, int], limits: Limits, namespace: str | None
) -> None:
    decoded = screen(Decoded(list(samples), Counter(earlier)), limits, namespace)
    assert decoded.refused_total == sum(earlier.values()) + len(samples) - len(decoded.samples)
    assert set(decoded.refused) <= {"non_finite", "series_limit", "too_many_labels", "label_too_long"} | {
        "namespace_not_allowed"
    }
    kept = iter(decoded.samples)
    for sample in samples:  # order kept, and a point is kept exactly when it is within every limit
        labels = dict(sample.labels)
        within = (
            len(labels) <= limits.max_labels
            and len(sample.name) <= limits.max_label_length
            and all(len(k) <= limits.max_label_length and len(v) <= limits.max_label_length for k, v in labels.items())
            and (  # a bound token: every namespace label names its namespace, and there is one
                namespace is None
                or bool(labels.keys() & set(NAMESPACE_KEYS))
                and all(labels.get(k, namespace) == namespace for k in NAMESPACE_KEYS)
            )
        )
        if within:
            assert next(kept) is sample
    assert next(kept, None) is None


# -- trigger evaluation over any stored values -------------------------------------------------------

_extreme = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 9.3e15, 5e-324, 0.0, -0.0, 2.0**63]),
)
_METRICS = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:num_preemptions",
)
_BOUNDS = (0.01, 0.1, 1.0)


@st.composite
def _stored_sample(draw: st.DrawFn) -> Sample:
    pod = draw(st.sampled_from(["p1", "p2", "p3"]))
    labels = (("deployment", "llama"), ("engine", draw(st.sampled_from("01"))), ("namespace", "ns"), ("pod", pod))
    if draw(st.integers(0, 4)) == 0:
        name = draw(st.sampled_from(["vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds"]))
        buckets = tuple(float(b) for b in draw(st.lists(st.integers(0, 2**64 - 1), min_size=4, max_size=4)))
        total = draw(_extreme)
        histogram = Histogram(sum(buckets), total, _BOUNDS, buckets)
        return Sample(name, labels, Kind.HISTOGRAM, histogram.count, histogram=histogram, delta=draw(st.booleans()))
    name = draw(st.sampled_from(_METRICS))
    kind = Kind.COUNTER if name.endswith(("tokens", "preemptions")) else Kind.GAUGE
    return Sample(name, labels, kind, draw(_extreme), start=draw(st.sampled_from([0.0, 1.0, 2.0])))


_query_metadata = st.builds(
    lambda agg, name, op: {
        "metricQuery": f'{agg}({name}{{namespace="ns"}})',
        "targetValue": "1",
        "operationOverTime": op,
        "window": "10s",
    },
    st.sampled_from(["sum", "avg", "min", "max", "count"]),
    st.sampled_from(_METRICS + ("vllm:time_to_first_token_seconds_sum", "vllm:inter_token_latency_seconds_count")),
    st.sampled_from(["last_one", "rate", "count", "avg", "min", "max"]),
)
_policy_metadata = st.builds(
    lambda phase, extra: {"policy": "vllm", "deployment": "llama", "phase": phase, **extra},
    st.sampled_from(["unified", "prefill", "decode"]),
    st.fixed_dictionaries(
        {},
        optional={
            "targetRunningPerPod": st.sampled_from(["1e-300", "1", "48"]),
            "targetWaitingPerPod": st.sampled_from(["1e-300", "5"]),
            "ttftSeconds": st.sampled_from(["1e-300", "0.5"]),
            "itlSeconds": st.sampled_from(["1e-300", "0.05"]),
            "prefillTokensPerSecondPerPod": st.sampled_from(["1e-300", "12000"]),
            "decodeTokensPerSecondPerPod": st.sampled_from(["1e-300", "1200"]),
            "maxScaleUpRate": st.sampled_from(["1", "1e300"]),
            "stableWindow": st.just("10s"),
            "panicWindow": st.just("2s"),
        },
    ),
)


@settings(FUZZ, max_examples=150)
@given(st.lists(st.lists(_stored_sample(), min_size=1, max_size=6), min_size=2, max_size=6), st.data())
def test_any_stored_values_answer_a_finite_value_or_our_error(pushes: list[list[Sample]], data: st.DataObject) -> None:
    store = Store(retention=60.0, max_series=1000)
    triggers = Triggers(store, stale_after=30.0, warmup_until=0.0)
    asked = [data.draw(_query_metadata | _policy_metadata) for _ in range(3)]
    for step, samples in enumerate(pushes):
        now = 100.0 + step
        store.append(samples, now)  # after the first round this also updates the triggers' views, on ingest
        for metadata in asked:
            try:
                evaluation = triggers.evaluate("ns", "so", metadata, now + 0.5)
            except ScalerError as exc:
                assert exc.grpc_code != "INTERNAL"
                continue
            assert math.isfinite(evaluation.value) and abs(evaluation.value) <= KEDA_MAX_VALUE, evaluation.value
