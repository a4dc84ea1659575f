"""The metricQuery grammar (kedify's otel-add-on plus PromQL label operators) and label matching."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.errors import InvalidInput, QuerySyntaxError
from scaler.expression import Matcher, Query, Selector, parse_query, parse_selector

PROPS = settings(max_examples=400, deadline=None, database=None)


def matchers_of(text: str) -> list[tuple[str, str, str]]:
    return [(m.label, m.op, m.value) for m in parse_query(text).selector.matchers]


# -- parsing -----------------------------------------------------------------------------------------


def test_kserve_generated_query() -> None:
    query = parse_query('sum(vllm:num_requests_running{namespace="ns", deployment="isvc-predictor"})')
    assert query.aggregation == "sum"
    assert query.selector.name == "vllm:num_requests_running"
    assert matchers_of('sum(vllm:num_requests_running{namespace="ns", deployment="isvc-predictor"})') == [
        ("namespace", "=", "ns"),
        ("deployment", "=", "isvc-predictor"),
    ]
    assert str(query) == 'sum(vllm:num_requests_running{namespace="ns", deployment="isvc-predictor"})'


@pytest.mark.parametrize("aggregation", ["sum", "avg", "min", "max", "count"])
def test_each_aggregation(aggregation: str) -> None:
    query = parse_query(f"{aggregation}(m)")
    assert (query.aggregation, query.selector) == (aggregation, Selector("m"))


@pytest.mark.parametrize(
    ("text", "aggregation", "name"),
    [
        ("m", "sum", "m"),  # the default aggregation is sum
        ("  m  ", "sum", "m"),
        ("max ( m )", "max", "m"),
        ("vllm.num_requests_running", "sum", "vllm:num_requests_running"),  # names are canonical
        ("avg(vllm:gpu_cache_usage_perc)", "avg", "vllm:kv_cache_usage_perc"),
        ("sum(vllm:prompt_tokens_total)", "sum", "vllm:prompt_tokens"),
        ("sum", "sum", "sum"),  # an aggregation word alone is a metric name
        ("count{a='b'}", "sum", "count"),
    ],
)
def test_names_and_default_aggregation(text: str, aggregation: str, name: str) -> None:
    query = parse_query(text)
    assert (query.aggregation, query.selector.name) == (aggregation, name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('m{a="x"}', [("a", "=", "x")]),
        ('m{a!="x"}', [("a", "!=", "x")]),
        ('m{a=~"x|y"}', [("a", "=~", "x|y")]),
        ('m{a!~"x.*"}', [("a", "!~", "x.*")]),
        ("m{a='single'}", [("a", "=", "single")]),
        ("m{a=bare-value_1.2}", [("a", "=", "bare-value_1.2")]),
        ("m{a = 'x' , b != y}", [("a", "=", "x"), ("b", "!=", "y")]),
        ('m{a="x",}', [("a", "=", "x")]),  # trailing comma
        ("m{}", []),
        ('m{a=""}', [("a", "=", "")]),
        ('m{k8s.pod.name="p"}', [("k8s.pod.name", "=", "p")]),
        ('m{llm-d.ai/role=~"decode|both"}', [("llm-d.ai/role", "=~", "decode|both")]),
        ('m{a="x,y}z"}', [("a", "=", "x,y}z")]),
        ('m{a="it\'s"}', [("a", "=", "it's")]),
        ("m{a='say \"hi\"'}", [("a", "=", 'say "hi"')]),
    ],
)
def test_matchers(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert matchers_of(text) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'm{a="q\"uote"}', 'q"uote'),
        (r"m{a='q\'uote'}", "q'uote"),
        (r'm{a="back\\slash"}', "back\\slash"),
        (r'm{a=~"a\\.b"}', r"a\.b"),
    ],
)
def test_escapes_in_quoted_values(text: str, value: str) -> None:
    (matcher,) = parse_query(text).selector.matchers
    assert matcher.value == value


def test_str_round_trips_through_the_parser() -> None:
    text = r"""max(vllm:x{a="q\"uote", b!='x\\y', c=~"d|e", k8s.pod.name!~"p-.*"})"""
    query = parse_query(text)
    assert parse_query(str(query)) == query
    assert str(parse_query("m")) == "sum(m)"


def test_parse_selector_reads_a_bare_label_list() -> None:
    selector = parse_selector('app="x", role=~"decode|both"')
    assert selector.name == ""
    assert [(m.label, m.op, m.value) for m in selector.matchers] == [("app", "=", "x"), ("role", "=~", "decode|both")]
    assert parse_selector("") == Selector("", ())
    with pytest.raises(QuerySyntaxError):
        parse_selector('app="x"} junk {')


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sum(m", "expected ')'"),
        ("sum(m{a='b'}", "expected ')'"),
        ("sum(m))", "unexpected trailing text"),
        ("m)", "unexpected trailing text"),
        ("(m)", "expected a metric name or an aggregation"),
        ("", "expected a metric name or an aggregation"),
        ("   ", "expected a metric name or an aggregation"),
        ("sum()", "expected a metric name"),
        ('m{a="b"', "expected '}'"),
        ('m{a="b" c="d"}', "expected '}'"),
        ('m{a="unterminated}', "unterminated string"),
        ("m{a='unterminated}", "unterminated string"),
        ('m{a="ends with backslash\\', "unterminated string"),
        ('m{a=~"("}', "bad regular expression"),
        ('m{a!~"[z-a]"}', "bad regular expression"),
        ('m{a=~"x{1001}"}', "bad regular expression"),  # RE2's repetition limit
        ('m{a=~"(?=a)b"}', "RE2 refuses it: invalid perl operator"),  # lookahead: not PromQL's dialect
        ('m{a=~"(?<=a)b"}', "RE2 refuses it"),  # lookbehind
        ('m{a=~"(a)\\1"}', "RE2 refuses it: invalid escape"),  # backreference
        ('m{a=~"' + "é" * 2049 + '"}', "longer than 4096 bytes"),  # 2,049 characters, 4,098 bytes
        ('m{a=="b"}', "a label value"),
        ('m{a~"b"}', "one of = != =~ !~"),
        ('m{="b"}', "a label name"),
        ("m{,}", "a label name"),
        ('m{a="b"} junk', "unexpected trailing text"),
        ("m junk", "unexpected trailing text"),
        ("sum(m) + 1", "unexpected trailing text"),
        ("rate(m[5m])", "unexpected trailing text"),
        ("1m", "expected a metric name or an aggregation"),
    ],
)
def test_syntax_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(text)
    assert message in str(info.value)
    assert repr(text) in str(info.value)
    assert "at position" in str(info.value)


def test_error_position_points_at_the_problem() -> None:
    with pytest.raises(QuerySyntaxError, match="at position 10$"):
        parse_query("sum(m{a=b}")


def test_overlong_query_is_refused() -> None:
    with pytest.raises(QuerySyntaxError, match="longer than 4096"):
        parse_query('m{a=~"' + "x" * 5000 + '"}')


def test_syntax_error_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_query("sum(")
    assert (info.value.grpc_code, info.value.http_status) == ("INVALID_ARGUMENT", 400)


# -- matching ----------------------------------------------------------------------------------------


def selector(text: str) -> Selector:
    return parse_query(text).selector


@pytest.mark.parametrize(
    ("text", "labels", "matches"),
    [
        ('m{a="x"}', {"a": "x"}, True),
        ('m{a="x"}', {"a": "y"}, False),
        ('m{a="x"}', {}, False),  # a series lacking the label never matches a="x"
        ('m{a=""}', {}, True),
        ('m{a!="x"}', {}, True),
        ('m{a!="x"}', {"a": "x"}, False),
        ('m{a=~"x|y"}', {"a": "y"}, True),
        ('m{a=~"x"}', {"a": "xx"}, False),  # anchored
        ('m{a=~"x"}', {"a": "ax"}, False),
        ('m{a=~"x.*"}', {"a": "xyz"}, True),
        ('m{a=~".*"}', {}, True),
        ('m{a=~".+"}', {}, False),
        ('m{a!~"x|y"}', {"a": "x"}, False),
        ('m{a!~"x|y"}', {"a": "z"}, True),
        ('m{a!~"x"}', {"a": "xx"}, True),
        ('m{namespace="ns"}', {"k8s.namespace.name": "ns"}, True),
        ('m{namespace="ns"}', {"k8s.namespace.name": "other"}, False),
        ('m{namespace="ns"}', {"namespace": "ns", "k8s.namespace.name": "other"}, True),
        ('m{deployment="isvc-predictor"}', {"k8s.deployment.name": "isvc-predictor"}, True),
        ('m{pod=~"vllm-.*"}', {"k8s.pod.name": "vllm-0"}, True),
        ('m{k8s.pod.name="p"}', {"k8s.pod.name": "p"}, True),
        ('m{llm-d.ai/role="decode"}', {"llm-d.ai/role": "decode"}, True),
        ('m{a="x", b="y"}', {"a": "x", "b": "y"}, True),
        ('m{a="x", b="y"}', {"a": "x", "b": "z"}, False),
        ("m", {"anything": "at all"}, True),
    ],
)
def test_matching(text: str, labels: dict[str, str], matches: bool) -> None:
    assert selector(text).matches(labels) is matches


def test_kserve_query_matches_otel_resource_attributes() -> None:
    sel = selector('sum(vllm:num_requests_running{namespace="ns", deployment="isvc-predictor"})')
    assert sel.matches({"k8s.namespace.name": "ns", "k8s.deployment.name": "isvc-predictor", "k8s.pod.name": "p"})
    assert not sel.matches({"k8s.namespace.name": "ns", "k8s.deployment.name": "other"})
    assert not sel.matches({"k8s.deployment.name": "isvc-predictor"})


def test_matcher_str_escapes_quotes_and_backslashes() -> None:
    assert str(Matcher("a", "=", 'x"y\\z')) == r'a="x\"y\\z"'
    assert str(Query("avg", Selector("m", (Matcher("a", "!=", "b"),)))) == 'avg(m{a!="b"})'


# -- properties --------------------------------------------------------------------------------------

_alphabet = st.sampled_from(list("sumavgx:._{}()=!~\"',\\ |*.-/ab1\n")) | st.characters()


@PROPS
@given(st.text(alphabet=_alphabet, max_size=60))
def test_arbitrary_text_is_a_query_or_a_syntax_error(text: str) -> None:
    try:
        query = parse_query(text)
    except QuerySyntaxError as exc:
        assert repr(text) in str(exc)
        return
    assert isinstance(query, Query)
    assert query.aggregation in ("sum", "avg", "min", "max", "count")
    if query.selector.name:  # `_total` alone canonicalises to an empty name, which cannot be printed back
        assert parse_query(str(query)) == query


_label = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from("abzAZ_"),
    st.text(alphabet="az09_./-", max_size=8),
)
_value = st.text(max_size=10)


@settings(PROPS, max_examples=150)
@given(
    st.sampled_from(["sum", "avg", "min", "max", "count"]),
    st.builds(lambda head, tail: head + tail, st.sampled_from("aZ_:"), st.text(alphabet="az09_:", max_size=12)),
    st.lists(st.tuples(_label, st.sampled_from(["=", "!="]), _value), max_size=4),
)
def test_printed_queries_parse_back(aggregation: str, name: str, matchers: list[tuple[str, str, str]]) -> None:
    query = Query(aggregation, Selector(name, tuple(Matcher(label, op, value) for label, op, value in matchers)))
    parsed = parse_query(str(query))
    assert parsed.aggregation == aggregation
    assert [(m.label, m.op, m.value) for m in parsed.selector.matchers] == matchers


def test_escapes_follow_promql_and_keep_regex_escapes() -> None:
    query = parse_query(r'sum(x{a=~"v\.1", b="say \"hi\"", c="back\\slash", d="tab\t"})')
    values = [m.value for m in query.selector.matchers]
    assert values == [r"v\.1", 'say "hi"', "back\\slash", "tab\t"]
    regex = query.selector.matchers[0]
    assert regex.matches({"a": "v.1"}) and not regex.matches({"a": "vx1"})
    assert parse_query(str(query)) == query
