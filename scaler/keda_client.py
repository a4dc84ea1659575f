"""`keda-llm-scaler ask`: asks a scaler what KEDA's external scaler client asks, and prints the answers.

The calls and their reading follow kedacore/keda `pkg/scalers/external_scaler.go`: GetMetricSpec, then
GetMetrics with that metric name, then IsActive, the float fields read only when > 0, TLS only when
asked for (`enableTLS`, a CA or a client certificate), plaintext otherwise. Errors are printed with
their gRPC code, as KEDA would log them, and make the exit code 1.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import socket
import ssl
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar, cast

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from scaler.durations import duration_argument, format_duration, positive_duration_argument
from scaler.externalscaler import externalscaler_pb2 as pb
from scaler.externalscaler import externalscaler_pb2_grpc as pb_grpc

T = TypeVar("T", bound=Message)
EPILOG = """\
example:
  keda-llm-scaler ask --scaler 127.0.0.1:6000 --namespace ns \\
      'metricQuery=sum(vllm:num_requests_running{namespace="ns"})' targetValue=4 --watch 10s
"""


def metadata_item(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected trigger metadata as key=value, like targetValue=4")
    return key.strip(), value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--scaler", metavar="HOST:PORT", help="the scaler's KEDA gRPC address [the metadata's scalerAddress]"
    )
    parser.add_argument("--namespace", default="default", help="the ScaledObject's namespace [default]")
    parser.add_argument("--name", default="ask", help="the ScaledObject's name [ask]")
    parser.add_argument(
        "--watch", type=positive_duration_argument, metavar="DURATION", help="then hold StreamIsActive open this long"
    )
    parser.add_argument(
        "--timeout", type=duration_argument, default=5.0, metavar="DURATION", help="deadline of each call [5s]"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    tls = parser.add_argument_group("TLS, as KEDA's external scaler (plaintext unless one of these is given)")
    tls.add_argument("--enable-tls", action="store_true", help="TLS with the system's CAs (KEDA's enableTLS)")
    tls.add_argument("--ca-cert", metavar="FILE", help="PEM CA bundle to verify the scaler with (KEDA's caCert)")
    tls.add_argument("--tls-client-cert", metavar="FILE", help="PEM client certificate (KEDA's tlsClientCert)")
    tls.add_argument("--tls-client-key", metavar="FILE", help="PEM key of --tls-client-cert (KEDA's tlsClientKey)")
    tls.add_argument(
        "--unsafe-ssl",
        action="store_true",
        help="TLS trusting whatever certificate the scaler presents, whatever its name (KEDA's unsafeSsl)",
    )
    parser.add_argument(
        "metadata", nargs="*", type=metadata_item, metavar="key=value", help="the trigger's metadata, as KEDA sends it"
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """One call's outcome: the response, or the gRPC status KEDA would have received."""

    method: str
    response: Message | None = None
    code: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code is None

    def as_dict(self) -> dict[str, Any]:
        if self.response is not None:
            return {"method": self.method, "ok": True, "response": json_format.MessageToDict(self.response)}
        return {"method": self.method, "ok": False, "code": self.code, "message": self.message}


@dataclass
class Report:
    """Everything asked and answered, printed as lines as it goes, or as JSON at the end."""

    out: TextIO
    as_json: bool
    header: dict[str, Any]
    answers: list[Answer] = field(default_factory=list)
    stream: list[dict[str, Any]] = field(default_factory=list)
    stream_end: str | None = None

    def line(self, text: str) -> None:
        if not self.as_json:
            print(text, file=self.out, flush=True)

    def add(self, answer: Answer, text: str) -> None:
        self.answers.append(answer)
        self.line(f"{answer.method:<14} {text if answer.ok else f'error {answer.code}: {answer.message}'}")

    def finish(self) -> None:
        if self.as_json:
            document = {**self.header, "calls": [a.as_dict() for a in self.answers]}
            if self.stream_end is not None:
                document["stream"] = {"messages": self.stream, "end": self.stream_end}
            json.dump(document, self.out, indent=2)
            print(file=self.out)

    @property
    def failed(self) -> bool:
        return any(not a.ok for a in self.answers)


def call(method: str, invoke: Callable[[], T]) -> Answer:
    try:
        return Answer(method, response=invoke())
    except grpc.RpcError as exc:
        return Answer(method, code=_code_name(exc), message=_details(exc))


def metric_value(value: pb.MetricValue) -> float:
    """As KEDA reads it: the float when it is > 0, else the int."""
    return value.metricValueFloat if value.metricValueFloat > 0 else float(value.metricValue)


def metric_target(spec: pb.MetricSpec) -> float:
    return spec.targetSizeFloat if spec.targetSizeFloat > 0 else float(spec.targetSize)


def _value_text(value: pb.MetricValue) -> str:
    fields = f"metricValue {value.metricValue}, metricValueFloat {_fmt(value.metricValueFloat)}"
    return f"{value.metricName} = {_fmt(metric_value(value))}  ({fields})"


def ask(stub: pb_grpc.ExternalScalerStub, ref: pb.ScaledObjectRef, timeout: float, report: Report) -> None:
    spec = call("GetMetricSpec", lambda: stub.GetMetricSpec(ref, timeout=timeout))
    specs = list(spec.response.metricSpecs) if isinstance(spec.response, pb.GetMetricSpecResponse) else []
    report.add(spec, "; ".join(f"metric {s.metricName}  target {_fmt(metric_target(s))}" for s in specs) or "none")
    values: dict[str, float] = {}
    for metric in specs:
        request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metric.metricName)
        answer = call("GetMetrics", functools.partial(stub.GetMetrics, request, timeout=timeout))
        got = list(answer.response.metricValues) if isinstance(answer.response, pb.GetMetricsResponse) else []
        values.update((v.metricName, metric_value(v)) for v in got)
        report.add(answer, "; ".join(_value_text(v) for v in got) or "no values")
    if not spec.ok:
        report.line("GetMetrics     not asked: KEDA takes the metric name from GetMetricSpec")
    active = call("IsActive", lambda: stub.IsActive(ref, timeout=timeout))
    report.add(
        active, "true" if isinstance(active.response, pb.IsActiveResponse) and active.response.result else "false"
    )
    for metric in specs:
        if metric.metricName in values and metric_target(metric) > 0:
            value, target = values[metric.metricName], metric_target(metric)
            replicas = math.ceil(value / target)
            unit = "replica" if replicas == 1 else "replicas"
            report.line(f"HPA AverageValue: ceil({_fmt(value)} / {_fmt(target)}) = {replicas} {unit}")


def watch(stub: pb_grpc.ExternalScalerStub, ref: pb.ScaledObjectRef, seconds: float, report: Report) -> None:
    """Hold StreamIsActive open for `seconds`, printing each message with its time as it comes."""
    report.line(f"StreamIsActive open for {format_duration(seconds)}")
    opened = time.monotonic()
    messages = stub.StreamIsActive(ref, timeout=seconds)
    try:
        for message in messages:
            offset = time.monotonic() - opened
            stamp = datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")
            report.stream.append({"time": stamp, "offset_seconds": round(offset, 3), "result": message.result})
            report.line(f"  {stamp}  +{offset:.3f}s  {'true' if message.result else 'false'}")
        report.stream_end = "OK: the scaler ended the stream (KEDA reconnects in 2s, its backoff reset)"
    except grpc.RpcError as exc:
        if _code_name(exc) == "DEADLINE_EXCEEDED":
            report.stream_end = f"watched {format_duration(seconds)}"
        else:
            report.stream_end = f"error {_code_name(exc)}: {_details(exc)}"
            report.answers.append(Answer("StreamIsActive", code=_code_name(exc), message=_details(exc)))
    report.line(f"StreamIsActive {report.stream_end}; {len(report.stream)} messages")


def channel_for(args: argparse.Namespace, address: str, metadata: dict[str, str]) -> tuple[grpc.Channel, str]:
    """A channel as KEDA builds one: TLS if asked for by flag or metadata, plaintext otherwise."""
    wants_tls = args.enable_tls or metadata.get("enableTLS", "").lower() == "true"
    if not (wants_tls or args.ca_cert or args.tls_client_cert or args.unsafe_ssl):
        return grpc.insecure_channel(address), "plaintext"
    if (args.tls_client_cert is None) != (args.tls_client_key is None):
        raise ValueError("--tls-client-cert and --tls-client-key go together")
    client = (_read(args.tls_client_key), _read(args.tls_client_cert)) if args.tls_client_cert else (None, None)
    options: list[tuple[str, Any]] = []
    root: bytes | None
    if args.unsafe_ssl:
        root, name = presented_certificate(address, args.timeout, args.tls_client_cert, args.tls_client_key)
        options.append(("grpc.ssl_target_name_override", name))
        how = f"TLS, trusting the presented certificate ({name})"
    else:
        root = _read(args.ca_cert) if args.ca_cert else None
        how = f"TLS, CA {args.ca_cert}" if args.ca_cert else "TLS, system CAs"
    if args.tls_client_cert:
        how += f", client certificate {args.tls_client_cert}"
    credentials = grpc.ssl_channel_credentials(root, client[0], client[1])
    return grpc.secure_channel(address, credentials, options=options), how


def presented_certificate(
    address: str, timeout: float, client_cert: str | None = None, client_key: str | None = None
) -> tuple[bytes, str]:
    """The scaler's own certificate and a name in it: trusting exactly that is how gRPC can skip checks.

    gRPC has no switch to skip verification, so `--unsafe-ssl` fetches the certificate unverified,
    then trusts it as a root and verifies the connection against one of its own names.
    """
    parts = urllib.parse.urlsplit("//" + address)
    host, port = parts.hostname or "", parts.port or 443
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
    if client_cert is not None:
        unverified.load_cert_chain(client_cert, client_key)  # a server that requires one may not finish without
    with (
        socket.create_connection((host, port), timeout) as raw,
        unverified.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ValueError(f"{address} presented no certificate")
    pem = ssl.DER_cert_to_PEM_cert(der)
    pinned = ssl.create_default_context(cadata=pem)
    pinned.check_hostname = False
    pinned.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if client_cert is not None:
        pinned.load_cert_chain(client_cert, client_key)
    with socket.create_connection((host, port), timeout) as raw, pinned.wrap_socket(raw, server_hostname=host) as tls:
        parsed = tls.getpeercert() or {}
    alternatives = cast(tuple[tuple[str, str], ...], parsed.get("subjectAltName", ()))
    subject = cast(tuple[tuple[tuple[str, str], ...], ...], parsed.get("subject", ()))
    names = [v for kind, v in alternatives if kind in ("DNS", "IP Address")]
    names += [v for rdn in subject for k, v in rdn if k == "commonName"]
    return pem.encode(), str(names[0]) if names else host


def ask_main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run `ask` with parsed arguments: 0 when every call succeeded, 1 when one answered an error."""
    out = sys.stdout if out is None else out
    metadata = dict(args.metadata)
    address = args.scaler or metadata.get("scalerAddress")
    if not address:
        print("keda-llm-scaler ask: error: give --scaler HOST:PORT (or scalerAddress=HOST:PORT)", file=sys.stderr)
        return 2
    metadata.setdefault("scalerAddress", address)  # KEDA passes its own keys too
    try:
        channel, how = channel_for(args, address, metadata)
    except (OSError, ValueError, ssl.SSLError) as exc:
        print(f"keda-llm-scaler ask: error: cannot set up TLS to {address}: {exc}", file=sys.stderr)
        return 1
    ref = pb.ScaledObjectRef(name=args.name, namespace=args.namespace, scalerMetadata=metadata)
    header = {"scaler": address, "transport": how, "namespace": args.namespace, "name": args.name}
    report = Report(out, args.json, {**header, "metadata": metadata})
    report.line(f"ask {address} ({how}) as KEDA for ScaledObject {args.namespace}/{args.name}")
    with channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        ask(stub, ref, args.timeout, report)
        if args.watch is not None:
            watch(stub, ref, args.watch, report)
    report.finish()
    return 1 if report.failed else 0


def run(argv: Sequence[str], out: TextIO | None = None) -> int:
    """`ask` from its own arguments (tests, scripts)."""
    parser = argparse.ArgumentParser(prog="keda-llm-scaler ask")
    add_arguments(parser)
    return ask_main(parser.parse_args(argv), out)


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _code_name(exc: grpc.RpcError) -> str:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    return code.name if code is not None else "UNKNOWN"


def _details(exc: grpc.RpcError) -> str:
    return (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)


def _fmt(value: float) -> str:
    return f"{value:g}"
