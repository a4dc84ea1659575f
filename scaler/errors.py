"""The scaler's exceptions, each carrying the gRPC status and HTTP code it maps to.

    ScalerError
    ├── InvalidInput            INVALID_ARGUMENT / 400
    │   ├── DecodeError         an OTLP payload we cannot read
    │   ├── QuerySyntaxError    a metricQuery that does not parse
    │   └── InvalidTrigger      scalerMetadata with an unknown key or a bad value
    ├── UnsupportedMediaType    INVALID_ARGUMENT / 415
    ├── LimitExceeded           RESOURCE_EXHAUSTED / 413: a request over a size or count limit
    │   └── RateLimited         RESOURCE_EXHAUSTED / 429: a sender over its push rate, retry after a while
    │       └── Overloaded      the receivers already hold --max-inflight-bytes of request bodies
    ├── Unauthenticated         UNAUTHENTICATED / 401
    ├── PermissionDenied        PERMISSION_DENIED / 403: an endpoint this configuration turns off
    ├── NotFound                NOT_FOUND / 404
    └── StaleData               UNAVAILABLE / 503: answering would mean guessing
        ├── WarmingUp           no data yet, and the scaler has only just started
        ├── InsufficientData    data is fresh but too thin for the operation (rate needs two samples)
        ├── MissingLabel        nothing matches, but fresh series of the metric lack a label the query requires
        └── OutOfRange          pushed values so large that the answer overflows or KEDA cannot carry it

Adapters map these to wire errors in one place each; the core raises only these.
"""

from __future__ import annotations

from typing import ClassVar


class ScalerError(Exception):
    """Base of every error the scaler reports to a client."""

    grpc_code: ClassVar[str] = "INTERNAL"
    http_status: ClassVar[int] = 500


class InvalidInput(ScalerError):
    grpc_code = "INVALID_ARGUMENT"
    http_status = 400


class DecodeError(InvalidInput):
    """An OTLP request that cannot be decoded."""


class QuerySyntaxError(InvalidInput):
    """A query expression that does not parse."""


class InvalidTrigger(InvalidInput):
    """Trigger metadata with an unknown key or a malformed value; the message names the key."""


class UnsupportedMediaType(ScalerError):
    grpc_code = "INVALID_ARGUMENT"
    http_status = 415


class LimitExceeded(ScalerError):
    grpc_code = "RESOURCE_EXHAUSTED"
    http_status = 413


class RateLimited(LimitExceeded):
    http_status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Overloaded(RateLimited):
    """Request bodies being read or decoded already fill --max-inflight-bytes: refused at once, retry soon."""


class Unauthenticated(ScalerError):
    grpc_code = "UNAUTHENTICATED"
    http_status = 401


class PermissionDenied(ScalerError):
    grpc_code = "PERMISSION_DENIED"
    http_status = 403


class NotFound(ScalerError):
    grpc_code = "NOT_FOUND"
    http_status = 404


class StaleData(ScalerError):
    """The data a trigger needs is missing or too old; KEDA's fallback should act, not a 0."""

    grpc_code = "UNAVAILABLE"
    http_status = 503


class WarmingUp(StaleData):
    """No data yet during the warm-up period after start-up."""


class InsufficientData(StaleData):
    """Fresh data exists but not enough of it for the requested operation."""


class MissingLabel(StaleData):
    """A selector matches nothing while fresh series of its metric lack one of its `=` labels.

    kedify would match those series; we do not (PromQL's rule), so answering 0 would scale the fleet
    to its minimum over a collector misconfiguration.
    """


class NothingReceived(StaleData):
    """The scaler has stored no datapoint from anyone since it started, so "never matched" proves nothing.

    A pool at zero while others push reads 0; a scaler that nothing reaches (a collector exporting
    elsewhere, a replica left out of the fan-out) must not tell KEDA to scale every pool to its minimum.
    """


class OutOfRange(StaleData):
    """The answer overflowed, or is beyond what KEDA can carry (it would read it as 0 or wrap it)."""
