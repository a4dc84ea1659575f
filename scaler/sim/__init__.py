"""Simulation tools: pushing OTLP as a collector sidecar would (needs the `[sim]` extra)."""
