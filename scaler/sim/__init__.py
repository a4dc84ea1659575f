"""The simulator (needs the `[sim]` extra): simulated vLLM pods and fleets, and a KEDA + HPA emulator.

Pure cores, time as an argument: `engine` (continuous batching), `pod`, `routing`, `gateway`,
`replicas`, `virtual_fleet`, `hpa`, `keda`, `trace`, `scenarios`, the `evaluation_*` modules. Adapters:
`pod_server` and `fleet_server` (aiohttp), `keda_grpc` (the scaler over gRPC), `otlp_push` (the OTel
SDK exporter), `cli`, `evaluate`, `demo`. See docs/simulator.md.
"""
