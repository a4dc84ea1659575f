"""The query grammar of kedify's otel-add-on, extended with PromQL's label operators.

    query    := [agg "("] selector [")"]          agg: sum | avg | min | max | count (default sum)
    selector := name ["{" [matcher ("," matcher)* [","]] "}"]
    matcher  := label ("=" | "!=" | "=~" | "!~") value    value: "double" or 'single' quoted, or bare
                                                       (escapes \\ \" \' \n \t; others stay as written)

Metric and label names may contain `.`, `/` and `-` (`k8s.pod.name`, `llm-d.ai/role`, `metric-404`);
metric names are compared after kedify's escaping (scaler.names). Regexes are anchored,
as in PromQL. A missing label reads as "", so `x="v"` never matches a series without `x`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from scaler.errors import QuerySyntaxError
from scaler.names import canonical_name, label_value

AGGREGATIONS = ("sum", "avg", "min", "max", "count")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:./-]*")  # kedify allows `-`; `.` and `/` are escaped to `_`
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_OP = re.compile(r"=~|!~|!=|=")
_BARE = re.compile(r"[^\s,{}\"'=!~]+")
_MAX_LENGTH = 4096
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}


@dataclass(frozen=True, slots=True)
class Matcher:
    label: str
    op: str
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = label_value(labels, self.label)
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'


@dataclass(frozen=True, slots=True)
class Selector:
    name: str  # canonical
    matchers: tuple[Matcher, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def lacking(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        """The labels of this selector's `=` matchers that `labels` lack, if every other matcher matches.

        A series it names would match under kedify's rule (a missing label does not exclude a series,
        kedify's `metric/mem_store.go`); `()` for a series that matches anyway or not even so.
        """
        missing: list[str] = []
        for matcher in self.matchers:
            if matcher.op == "=" and matcher.value and not label_value(labels, matcher.label):
                missing.append(matcher.label)
            elif not matcher.matches(labels):
                return ()
        return tuple(missing)

    def __str__(self) -> str:
        inner = ", ".join(str(m) for m in self.matchers)
        return f"{self.name}{{{inner}}}" if inner else self.name


@dataclass(frozen=True, slots=True)
class LackingLabels:
    """Matches the series that `selector` misses only because they lack one of its `=` labels."""

    selector: Selector

    def matches(self, labels: Mapping[str, str]) -> bool:
        return bool(self.selector.lacking(labels))


@dataclass(frozen=True, slots=True)
class Query:
    aggregation: str
    selector: Selector

    def __str__(self) -> str:
        return f"{self.aggregation}({self.selector})"


def parse_query(text: str) -> Query:
    """Parse a metricQuery; raise QuerySyntaxError saying what is wrong and where."""
    if len(text) > _MAX_LENGTH:
        raise QuerySyntaxError(f"query is longer than {_MAX_LENGTH} characters")
    return _Parser(text).query()


def parse_selector(text: str) -> Selector:
    """Parse a bare label list such as `app="x", role=~"decode|both"` (no name, no braces)."""
    parser = _Parser("{" + text + "}")
    matchers = parser.matchers()
    parser.end()
    return Selector("", matchers)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> QuerySyntaxError:
        return QuerySyntaxError(f"invalid query {self.text!r}: {what} at position {self.pos}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, literal: str) -> bool:
        self.skip_space()
        return self.text.startswith(literal, self.pos)

    def take(self, literal: str) -> bool:
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def expect(self, literal: str) -> None:
        if not self.take(literal):
            raise self.fail(f"expected {literal!r}")

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        self.skip_space()
        found = pattern.match(self.text, self.pos)
        if not found:
            raise self.fail(f"expected {what}")
        self.pos = found.end()
        return found.group(0)

    def end(self) -> None:
        self.skip_space()
        if self.pos != len(self.text):
            raise self.fail("unexpected trailing text")

    def query(self) -> Query:
        name = self.match(_NAME, "a metric name or an aggregation")
        if name in AGGREGATIONS and self.take("("):
            selector = self.selector()
            self.expect(")")
            self.end()
            return Query(name, selector)
        selector = Selector(canonical_name(name), self.matchers() if self.peek("{") else ())
        self.end()
        return Query("sum", selector)

    def selector(self) -> Selector:
        name = self.match(_NAME, "a metric name")
        matchers = self.matchers() if self.peek("{") else ()
        return Selector(canonical_name(name), matchers)

    def matchers(self) -> tuple[Matcher, ...]:
        self.expect("{")
        found: list[Matcher] = []
        while not self.take("}"):
            found.append(self.matcher())
            if not self.take(","):
                self.expect("}")
                break
        return tuple(found)

    def matcher(self) -> Matcher:
        label = self.match(_LABEL, "a label name")
        op = self.match(_OP, "one of = != =~ !~")
        value = self.value()
        if op in ("=", "!="):
            return Matcher(label, op, value)
        try:
            return Matcher(label, op, value, re.compile(value))
        except (re.error, RecursionError, OverflowError) as exc:
            raise self.fail(f"bad regular expression {value!r} ({exc})") from exc

    def value(self) -> str:
        self.skip_space()
        quote = self.text[self.pos] if self.pos < len(self.text) else ""
        if quote not in ('"', "'"):
            return self.match(_BARE, "a label value")
        out: list[str] = []
        i = self.pos + 1
        while i < len(self.text):
            char = self.text[i]
            if char == "\\" and i + 1 < len(self.text):
                following = self.text[i + 1]
                # As in PromQL strings; any other escape stays literal, so regexes keep `\.` and `\d`.
                out.append(_ESCAPES.get(following, "\\" + following))
                i += 2
                continue
            if char == quote:
                self.pos = i + 1
                return "".join(out)
            out.append(char)
            i += 1
        raise self.fail("unterminated string")
