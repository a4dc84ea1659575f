"""The query grammar of kedify's otel-add-on, extended with PromQL's label operators.

    query    := [agg "("] selector [")"]          agg: sum | avg | min | max | count (default sum)
    selector := name ["{" [matcher ("," matcher)* [","]] "}"]
    matcher  := label ("=" | "!=" | "=~" | "!~") value    value: "double" or 'single' quoted, or bare
                                                       (escapes \\ \" \' \n \t; others stay as written)

Metric and label names may contain `.`, `/` and `-` (`k8s.pod.name`, `llm-d.ai/role`, `metric-404`);
metric names are compared after kedify's escaping (scaler.names). A missing label reads as "", so
`x="v"` never matches a series without `x`.

Regexes are RE2, PromQL's dialect, fully anchored with `.` matching newlines as Prometheus compiles
them (`model/labels/regexp.go`: `"^(?s:" + v + ")$"`): matching is linear in the label's length
whatever the pattern, so no query can stall the event loop. RE2 refuses lookaround and
backreferences, as PromQL does. Exact matchers run before any regex, so a namespace confinement
(`scaler.triggers.confine`) keeps a tenant's regex off other tenants' labels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import re2

from scaler.errors import QuerySyntaxError
from scaler.names import canonical_name, label_value

AGGREGATIONS = ("sum", "avg", "min", "max", "count")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:./-]*")  # kedify allows `-`; `.` and `/` are escaped to `_`
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_OP = re.compile(r"=~|!~|!=|=")
_BARE = re.compile(r"[^\s,{}\"'=!~]+")
_MAX_LENGTH = 4096
MAX_PATTERN_BYTES = 4096
MAX_PROGRAM_SIZE = 20_000  # RE2 instructions; `(a|b|...){n}` blow-ups past this are refused
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}


class Pattern(Protocol):
    def fullmatch(self, text: str) -> object | None: ...


class RegexError(ValueError):
    """A pattern RE2 refuses, or one over the size caps."""


def _options() -> re2.Options:
    options = re2.Options()
    options.dot_nl = True  # Prometheus' (?s)
    options.log_errors = False
    return options


_OPTIONS = _options()


@lru_cache(maxsize=1024)
def compile_regex(value: str) -> Pattern:
    """The RE2 program for a label regex; RegexError saying why when RE2 or our caps refuse it."""
    if len(value.encode()) > MAX_PATTERN_BYTES:
        raise RegexError(f"the pattern is longer than {MAX_PATTERN_BYTES} bytes")
    try:
        compiled = re2.compile(value, _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise RegexError(f"RE2 refuses it: {detail}") from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise RegexError(f"its RE2 program has {compiled.programsize} instructions, over {MAX_PROGRAM_SIZE}")
    pattern: Pattern = compiled
    return pattern


@dataclass(frozen=True, slots=True)
class Matcher:
    label: str
    op: str
    value: str
    pattern: Pattern | None = field(default=None, compare=False)  # derived from `value`

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
        """Exact matchers first: a regex only ever sees labels that passed them."""
        for matcher in self.matchers:
            if matcher.pattern is None and not matcher.matches(labels):
                return False
        return all(m.matches(labels) for m in self.matchers if m.pattern is not None)

    def lacking(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        """The labels of this selector's `=` matchers that `labels` lack, if every other matcher matches.

        A series it names would match under kedify's rule (a missing label does not exclude a series,
        kedify's `metric/mem_store.go`); `()` for a series that matches anyway or not even so.
        """
        missing: list[str] = []
        for matcher in sorted(self.matchers, key=lambda m: m.pattern is not None):
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
    if len(text) > _MAX_LENGTH:
        raise QuerySyntaxError(f"selector is longer than {_MAX_LENGTH} characters")
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
            return Matcher(label, op, value, compile_regex(value))
        except RegexError as exc:
            shown = value if len(value) <= 80 else value[:80] + "..."
            raise self.fail(f"bad regular expression {shown!r}: {exc}") from None

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
