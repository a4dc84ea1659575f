"""Label regexes are RE2: linear time whatever the pattern, and never run on another tenant's labels.

Against the backtracking `re` module, `=~"(a+)+b"` over a label of 28 `a`s took 9.6 s (×2.2 per
character) and over 2,048 never ended, holding the event loop, the health check and SIGTERM.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from scaler.errors import InvalidTrigger
from scaler.expression import Matcher, Selector, parse_query
from scaler.otlp import Kind, Sample
from scaler.store import Store
from scaler.triggers import Triggers, confine, parse_trigger


def finishes(work: Callable[[], object], within: float = 30.0) -> object:
    """Run `work` in a thread; fail (instead of hanging the suite) if it has not returned in time."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(within)
    assert not thread.is_alive(), "a regex match did not finish: backtracking"
    return result[0]


@pytest.mark.parametrize("length", [28, 2048])
def test_catastrophic_pattern_answers_at_once(length: int) -> None:
    store = Store(retention=60.0, max_series=10)
    labels = (("k8s.pod.name", "a" * length), ("k8s.namespace.name", "ns"))
    store.append([Sample("m", labels, Kind.GAUGE, 1.0)], now=1.0)
    triggers = Triggers(store, stale_after=30.0, warmup_until=0.0)
    metadata = {"metricQuery": 'sum(m{pod=~"(a+)+b"})', "targetValue": "1"}
    evaluation = finishes(lambda: triggers.evaluate("ns", "so", metadata, now=2.0))
    assert evaluation.value == 0.0  # type: ignore[attr-defined]


def test_the_match_is_anchored_and_dot_matches_newlines_as_in_promql() -> None:
    (matcher,) = parse_query('m{a=~"x.*"}').selector.matchers
    assert matcher.matches({"a": "x\ny"})
    assert not matcher.matches({"a": "yx"})
    (either,) = parse_query('m{a=~"b|c"}').selector.matchers
    assert either.matches({"a": "c"}) and not either.matches({"a": "bc"})


@pytest.mark.parametrize(
    ("pattern", "why"),
    [("(?=a)a", "invalid perl operator"), ("(?<!a)b", "invalid perl operator"), ("(a)\\\\1", "invalid escape")],
)
def test_perl_only_constructs_are_invalid_argument_naming_the_key(pattern: str, why: str) -> None:
    with pytest.raises(InvalidTrigger, match=f"metricQuery: .*RE2 refuses it: {why}"):
        parse_trigger({"metricQuery": f'm{{a=~"{pattern}"}}', "targetValue": "1"})
    with pytest.raises(InvalidTrigger, match=f"podSelector: .*RE2 refuses it: {why}"):
        parse_trigger({"policy": "vllm", "podSelector": f'role=~"{pattern}"'})


def test_a_huge_pod_selector_is_refused_at_once() -> None:
    """A 3.6 MB podSelector regex stalled the loop for 5.6 s and kept 50–80 MB per distinct selector."""
    selector = 'role=~"' + "|".join(f"r{i}" for i in range(400_000)) + '"'
    started = time.perf_counter()
    with pytest.raises(InvalidTrigger, match="podSelector: longer than 4096 characters"):
        parse_trigger({"policy": "vllm", "podSelector": selector})
    assert time.perf_counter() - started < 5.0


def test_program_size_is_capped() -> None:
    pattern = "(" + "|".join(f"[a-z]{{{i % 50 + 1}}}x" for i in range(120)) + "){20}"
    with pytest.raises(InvalidTrigger, match="instructions, over"):
        parse_trigger({"metricQuery": f'm{{a=~"{pattern}"}}', "targetValue": "1"})


class Spy:
    """A pattern that records the labels it was asked about (a seam inside the matcher)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def fullmatch(self, text: str) -> object | None:
        self.seen.append(text)
        return None


def test_exact_matchers_and_namespace_confinement_run_before_any_regex() -> None:
    """Under --isolate-namespaces the tenant's regex must never see another tenant's labels (timing leak)."""
    spy = Spy()
    query = parse_query('m{pod=~"x"}')
    regex = Matcher("pod", "=~", "x", spy)
    confined = confine(query.__class__(query.aggregation, Selector("m", (regex,))), "tenant-a")
    assert not confined.selector.matches({"namespace": "tenant-b", "pod": "secret-b"})
    assert spy.seen == []
    confined.selector.matches({"namespace": "tenant-a", "pod": "mine"})
    assert spy.seen == ["mine"]
    assert confined.selector.lacking({"namespace": "tenant-b", "pod": "secret-b"}) == ()
    assert spy.seen == ["mine"]
