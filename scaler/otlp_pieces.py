"""Splitting a large OTLP request into small ones, so that its decoding can pause between them. Pure.

Protobuf is split on the wire and JSON one value at a time with the standard decoder: neither is
parsed whole. Each piece is a serialized ExportMetricsServiceRequest of about `budget` bytes (a run
of whole resources; or, of a resource larger than that, one scope with whole metrics or a run of one
metric's points), and decoding the pieces gives the samples that decoding the request would. The
steps are a generator: a None step did bounded work without finishing a piece, a place where the
caller may pause. Only the message boundaries above the points are read here: upb parses each piece.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Generator, Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogram,
    Gauge,
    Histogram,
    Metric,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
    Summary,
)

from scaler.errors import DecodeError
from scaler.otlp import read_json

# A piece is parsed in one call that holds the event loop: 1 MiB is about 3 ms of upb here, and a
# collector batch of 100 vLLM pods (about 1 MB) is then one piece, parsed once.
PIECE_BYTES = 1024 * 1024
JSON_PIECE_BYTES = 16 * 1024  # json_format is Python: about 500 small points, a few milliseconds
_STEP = 256  # fields or values walked between two steps
_LEN = 2  # the wire type of messages and strings
_GROUP_DEPTH = 64
# Metric's `data` oneof: field number, JSON names and message class of each member.
_DATA: dict[int, tuple[tuple[str, ...], type[Message]]] = {
    5: (("gauge",), Gauge),
    7: (("sum",), Sum),
    9: (("histogram",), Histogram),
    10: (("exponentialHistogram", "exponential_histogram"), ExponentialHistogram),
    11: (("summary",), Summary),
}
_DATA_BY_JSON = {name: number for number, (names, _) in _DATA.items() for name in names}

Step = bytes | None
Field = tuple[int, int, int, int, int]  # number, wire type, where its tag starts, where its value starts and ends


def protobuf_pieces(body: bytes, budget: int = PIECE_BYTES) -> Iterator[Step]:
    """The pieces of a binary OTLP request; DecodeError for a body that is not one."""
    if len(body) <= budget:
        yield body
        return
    pieces = _Pieces(budget)
    whole = _Run(budget)
    for field in _walk(body, 0, len(body)):
        if field is None:
            yield None
        elif field[0] == 1 and field[1] == _LEN:  # resource_metrics; nothing else is decoded
            if field[4] - field[2] <= budget:
                yield from pieces.flush()
                yield from whole.add(memoryview(body)[field[2] : field[4]])
            else:
                yield from whole.flush()
                yield from _resource_metrics(body, field, pieces)
    yield from whole.flush()
    yield from pieces.flush()


def json_pieces(body: bytes, budget: int = JSON_PIECE_BYTES) -> Iterator[Step]:
    """The pieces of an OTLP/JSON request; DecodeError for a body that is not one."""
    if len(body) <= budget:
        yield read_json(body).SerializeToString()
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid OTLP JSON payload: {exc}") from exc
    walk = _JsonWalk(text, budget)
    yield from walk.request()
    walk.end()


# -- protobuf ------------------------------------------------------------------------------------


def _resource_metrics(body: bytes, at: Field, pieces: _Pieces) -> Iterator[Step]:
    shell: list[memoryview] = []
    scopes: list[Field] = []
    for field in _walk(body, at[3], at[4]):
        if field is None:
            yield None
        elif field[0] == 2 and field[1] == _LEN:
            scopes.append(field)
        else:
            shell.append(memoryview(body)[field[2] : field[4]])
    resource = b"".join(shell)
    for scope in scopes:
        yield from _scope_metrics(body, scope, resource, pieces)


def _scope_metrics(body: bytes, at: Field, resource: bytes, pieces: _Pieces) -> Iterator[Step]:
    shell: list[memoryview] = []
    metrics: list[Field] = []
    for field in _walk(body, at[3], at[4]):
        if field is None:
            yield None
        elif field[0] == 2 and field[1] == _LEN:
            metrics.append(field)
        else:
            shell.append(memoryview(body)[field[2] : field[4]])
    yield from pieces.enter(resource, b"".join(shell))
    for metric in metrics:
        if metric[4] - metric[2] <= pieces.budget:
            yield from pieces.add(bytes(memoryview(body)[metric[2] : metric[4]]))
        else:
            yield from _split_metric(body, metric, pieces)


def _split_metric(body: bytes, at: Field, pieces: _Pieces) -> Iterator[Step]:
    """A metric too large for one piece: its points in runs, each under a copy of the rest of it."""
    shell: list[memoryview] = []
    member, data = 0, list[Field]()
    for field in _walk(body, at[3], at[4]):
        if field is None:
            yield None
        elif field[0] in _DATA and field[1] == _LEN:
            if field[0] != member:  # a oneof: another member replaces what came before
                member, data = field[0], list[Field]()
            data.append(field)
        else:
            shell.append(memoryview(body)[field[2] : field[4]])
    data_shell: list[memoryview] = []
    points: list[memoryview] = []
    for part in data:
        for field in _walk(body, part[3], part[4]):
            if field is None:
                yield None
            elif field[0] == 1 and field[1] == _LEN:  # data_points, in every member
                points.append(memoryview(body)[field[2] : field[4]])
            else:
                data_shell.append(memoryview(body)[field[2] : field[4]])
    metric, rest = b"".join(shell), b"".join(data_shell)
    for run in _runs(points, pieces.budget):
        yield from pieces.add(_message_field(2, metric + _message_field(member, rest + b"".join(run))))


def _runs(points: list[memoryview], budget: int) -> Iterator[list[memoryview]]:
    run: list[memoryview] = []
    size = 0
    for point in points:
        if run and size + len(point) > budget:
            yield run
            run, size = [], 0
        run.append(point)
        size += len(point)
    if run:
        yield run


def _walk(body: bytes, start: int, end: int) -> Iterator[Field | None]:
    """The fields of the message in body[start:end], with a None every _STEP fields."""
    pos, count = start, 0
    while pos < end:
        tag_at = pos
        tag, pos = _varint(body, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise DecodeError("invalid OTLP protobuf payload: field number 0")
        if wire == _LEN:
            length, value_at = _varint(body, pos, end)
            pos = value_at + length
            if pos > end:
                raise DecodeError("invalid OTLP protobuf payload: truncated field")
        else:
            value_at, pos = pos, _skip(body, pos, end, number, wire, 0)
        yield number, wire, tag_at, value_at, pos
        count += 1
        if count % _STEP == 0:
            yield None


def _skip(body: bytes, pos: int, end: int, number: int, wire: int, depth: int) -> int:
    if wire == 0:
        return _varint(body, pos, end)[1]
    if wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == _LEN:
        length, pos = _varint(body, pos, end)
        pos += length
    elif wire == 3 and depth < _GROUP_DEPTH:  # a group (proto2), kept as an unknown field
        while True:
            tag, pos = _varint(body, pos, end)
            if tag & 7 == 4:
                if tag >> 3 != number:
                    raise DecodeError("invalid OTLP protobuf payload: unmatched end of group")
                return pos
            pos = _skip(body, pos, end, tag >> 3, tag & 7, depth + 1)
    else:
        raise DecodeError(f"invalid OTLP protobuf payload: wire type {wire}")
    if pos > end:
        raise DecodeError("invalid OTLP protobuf payload: truncated field")
    return pos


def _varint(body: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while pos < end and shift < 70:
        byte = body[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise DecodeError("invalid OTLP protobuf payload: truncated or overlong varint")


def _message_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LEN) + _encode_varint(len(payload)) + payload


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class _Run:
    """Gathers whole `resource_metrics` fields into pieces: concatenated, they are one request."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._fields: list[memoryview] = []
        self._size = 0

    def add(self, field: memoryview) -> Iterator[Step]:
        if self._fields and self._size + len(field) > self.budget:
            yield from self.flush()
        self._fields.append(field)
        self._size += len(field)

    def flush(self) -> Iterator[Step]:
        if self._fields:
            piece = b"".join(self._fields)
            self._fields, self._size = [], 0
            yield piece


class _Pieces:
    """Gathers metrics (as encoded `metrics` fields) under one resource and scope into pieces."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._resource = self._scope = b""
        self._metrics: list[bytes] = []
        self._size = 0

    def enter(self, resource: bytes, scope: bytes) -> Iterator[Step]:
        yield from self.flush()
        self._resource, self._scope = resource, scope

    def add(self, metric: bytes) -> Iterator[Step]:
        if self._metrics and self._size + len(metric) > self.budget:
            yield from self.flush()
        self._metrics.append(metric)
        self._size += len(metric)

    def flush(self) -> Iterator[Step]:
        if self._metrics:
            scope = _message_field(2, self._scope + b"".join(self._metrics))
            self._metrics, self._size = [], 0
            yield _message_field(1, self._resource + scope)


# -- JSON ----------------------------------------------------------------------------------------

_SPACE = re.compile(r"[ \t\n\r]*")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DecodeError(f"invalid OTLP JSON payload: duplicate key {key!r}")
        out[key] = value
    return out


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)  # json_format refuses duplicates too


class _JsonWalk:
    """A cursor over OTLP/JSON text that descends into the four repeated levels and reads the rest
    value by value; each level's other members go through json_format, as a whole request would."""

    def __init__(self, text: str, budget: int) -> None:
        self.text = text
        self.at = 0
        self.pieces = _Pieces(budget)
        self.count = 0

    def request(self) -> Iterator[Step]:
        if self._peek() != "{":
            raise DecodeError("invalid OTLP JSON payload: the body must be a JSON object")
        rest: dict[str, Any] = {}
        for key in self._members():
            if key in ("resourceMetrics", "resource_metrics") and self._peek() == "[":
                for _ in self._elements():
                    yield from self._resource_metrics()
            else:
                rest[key] = self._value()
            yield from self._tick()
        _parse(rest, ExportMetricsServiceRequest)  # refuses what a whole parse would (a null, a wrong type)
        yield from self.pieces.flush()

    def end(self) -> None:
        if self._peek():
            raise DecodeError("invalid OTLP JSON payload: extra data after the object")

    def _resource_metrics(self) -> Iterator[Step]:
        rest: dict[str, Any] = {}
        scopes: list[tuple[bytes, list[bytes]]] = []
        for key in self._members():
            if key in ("scopeMetrics", "scope_metrics") and self._peek() == "[":
                for _ in self._elements():
                    scopes.append((yield from self._scope_metrics()))
            else:
                rest[key] = self._value()
        resource = _parse(rest, ResourceMetrics)
        for scope, metrics in scopes:
            yield from self.pieces.enter(resource, scope)
            for metric in metrics:
                yield from self.pieces.add(metric)

    def _scope_metrics(self) -> Generator[Step, None, tuple[bytes, list[bytes]]]:
        rest: dict[str, Any] = {}
        metrics: list[bytes] = []
        for key in self._members():
            if key == "metrics" and self._peek() == "[":
                for _ in self._elements():
                    metrics.extend((yield from self._metric()))
            else:
                rest[key] = self._value()
        return _parse(rest, ScopeMetrics), metrics

    def _metric(self) -> Generator[Step, None, list[bytes]]:
        """A metric as encoded `metrics` fields: one, or several when its points need several pieces."""
        rest: dict[str, Any] = {}
        member, data_rest, runs = 0, b"", list[bytes]()
        for key in self._members():
            number = _DATA_BY_JSON.get(key, 0)
            if number and self._peek() == "{":
                if member:
                    raise DecodeError("invalid OTLP JSON payload: a metric with two kinds of data")
                member = number
                data_rest, runs = yield from self._data(_DATA[number][1])
            else:
                rest[key] = self._value()
        shell = _parse(rest, Metric)
        if not member:
            return []  # no data we know: nothing to decode
        return [_message_field(2, shell + _message_field(member, data_rest + run)) for run in runs or [b""]]

    def _data(self, kind: type[Message]) -> Generator[Step, None, tuple[bytes, list[bytes]]]:
        rest: dict[str, Any] = {}
        runs: list[bytes] = []
        for key in self._members():
            if key in ("dataPoints", "data_points") and self._peek() == "[":
                run: list[Any] = []
                size = 0
                for _ in self._elements():
                    start = self.at
                    run.append(self._value())
                    size += self.at - start
                    if size > self.pieces.budget:
                        runs.append(_parse({"dataPoints": run}, kind))
                        run, size = [], 0
                        yield None
                    yield from self._tick()
                if run:
                    runs.append(_parse({"dataPoints": run}, kind))
            else:
                rest[key] = self._value()
        return _parse(rest, kind), runs

    def _tick(self) -> Iterator[Step]:
        self.count += 1
        if self.count % _STEP == 0:
            yield None

    # -- the cursor -------------------------------------------------------------------------------

    def _peek(self) -> str:
        match = _SPACE.match(self.text, self.at)
        self.at = match.end() if match else self.at
        return self.text[self.at : self.at + 1]

    def _value(self) -> Any:
        self._peek()
        try:
            value, self.at = _DECODER.raw_decode(self.text, self.at)
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"invalid OTLP JSON payload: {exc}") from exc
        return value

    def _expect(self, char: str) -> None:
        if self._peek() != char:
            raise DecodeError(f"invalid OTLP JSON payload: expected {char!r} at offset {self.at}")
        self.at += 1

    def _members(self) -> Iterator[str]:
        """The keys of the object at the cursor; after each, the caller reads its value."""
        self._expect("{")
        seen: set[str] = set()
        if self._peek() == "}":
            self.at += 1
            return
        while True:
            if self._peek() != '"':
                raise DecodeError(f"invalid OTLP JSON payload: expected a key at offset {self.at}")
            key = self._value()
            if key in seen:
                raise DecodeError(f"invalid OTLP JSON payload: duplicate key {key!r}")
            seen.add(key)
            self._expect(":")
            yield key
            if self._peek() == ",":
                self.at += 1
                continue
            self._expect("}")
            return

    def _elements(self) -> Iterator[None]:
        """One step per element of the array at the cursor; the caller reads each element."""
        self._expect("[")
        if self._peek() == "]":
            self.at += 1
            return
        while True:
            yield None
            if self._peek() == ",":
                self.at += 1
                continue
            self._expect("]")
            return


def _parse(value: dict[str, Any], kind: Callable[[], Message]) -> bytes:
    message = kind()
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise DecodeError(f"invalid OTLP JSON payload: {exc}") from exc
    return message.SerializeToString()
