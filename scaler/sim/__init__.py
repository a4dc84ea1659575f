"""The simulator (needs the `[sim]` extra): simulated vLLM pods and fleets, and a KEDA + HPA emulator.

Pure cores, time as an argument: `engine` (continuous batching), `pod`, `routing`, `replicas`,
`virtual_fleet`, `hpa`, `keda`, `trace`. Adapters: `pod_server` and `fleet_server` (aiohttp),
`keda_grpc` (the scaler over gRPC), `otlp_push` (the OTel SDK exporter), `cli`. See docs/simulator.md.
"""
