"""keda-llm-scaler: a KEDA external scaler for vLLM fleets, fed by OTLP pushes."""

from scaler.errors import ScalerError, StaleData
from scaler.expression import parse_query
from scaler.otlp import Sample, decode_export_request
from scaler.store import Store

__all__ = ["ScalerError", "Sample", "StaleData", "Store", "decode_export_request", "parse_query", "__version__"]
__version__ = "0.1.0"
