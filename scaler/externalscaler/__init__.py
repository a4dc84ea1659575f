"""Generated gRPC stubs for KEDA's ExternalScaler contract (proto/externalscaler.proto).

Regenerate with `python proto/generate.py`; tests/unit/test_proto_contract.py fails when they are stale.
"""
